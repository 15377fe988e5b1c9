"""Where a swap's files come from: a segment model reference (registry name, shipped config name or yaml path)
resolved to its yaml and registry entry, and the registry's weights fetched once and verified with this package's
readers (:func:`fomm_lab.hub.download.ensure_checkpoint` with ``verify=``)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ..errors import ConfigError
from ..hub.registry import FACE_PARSERS, MODELS, SWAPPERS, RemoteFile
from .weights import parser_state, read_weights_file, segment_states

DEFAULT_PARSER = "bisenet"
"""The registry's face parser (:data:`fomm_lab.hub.registry.FACE_PARSERS`)."""


def configs_folder() -> Path:
    """The shipped segment model configs (``vox-256-sem-{5,10,15}segments.yaml``)."""
    return Path(str(resources.files("fomm_lab.swap") / "configs"))


def shipped_configs() -> list[str]:
    """Names of the shipped segment model configs, sorted."""
    return sorted(p.stem for p in configs_folder().glob("*.yaml"))


def resolve_segment_model(model: str | os.PathLike[str]) -> tuple[Path, RemoteFile | None]:
    """(the yaml, the registry entry whose weights fit it or None) of a registry name (``vox-10segments``), a
    shipped config name (``vox-256-sem-10segments``) or a yaml path. ConfigError for an animation model's name or
    an unknown name."""
    if isinstance(model, str) and model in SWAPPERS:
        entry = SWAPPERS[model]
        return configs_folder() / f"{entry.config}.yaml", entry
    if isinstance(model, str) and model in shipped_configs():
        fitting = next((e for e in SWAPPERS.values() if e.config == model), None)
        return configs_folder() / f"{model}.yaml", fitting
    if isinstance(model, str) and model in MODELS:
        raise ConfigError(f"{model} is an animation model (First Order Motion Model family), not a face swap's "
                          f"segment model: give one of {', '.join(SWAPPERS)}, a shipped config "
                          f"({', '.join(shipped_configs())}) or a segment model's yaml")
    path = Path(model)
    if not path.is_file():
        raise ConfigError(f"segment model {model} is neither a registry name ({', '.join(SWAPPERS)}), a shipped "
                          f"config ({', '.join(shipped_configs())}) nor an existing yaml file")
    return path, None


def verify_segment_checkpoint(path: Path) -> None:
    """The structural check of a downloaded segment checkpoint: a co-part segmentation model, in either layout."""
    segment_states(path, read_weights_file(path, "segment checkpoint"))


def verify_face_parser(path: Path) -> None:
    """The structural check of downloaded face parser weights: the 19-class BiSeNet."""
    parser_state(path, read_weights_file(path, "face parser weights"))


def ensure_segment_checkpoint(entry: RemoteFile, cache_dir: str | os.PathLike[str] | None = None,
                              progress: bool = True) -> Path:
    """The registry's segment checkpoint in the cache, fetched and verified once (DownloadError naming each
    mirror and where to put the file by hand when none works)."""
    from ..hub.download import ensure_checkpoint

    return ensure_checkpoint(entry, cache_dir, progress, verify=verify_segment_checkpoint)


def ensure_face_parser(cache_dir: str | os.PathLike[str] | None = None, progress: bool = True) -> Path:
    """The registry's face parser weights (``79999_iter.pth``) in the cache, fetched and verified once."""
    from ..hub.download import ensure_checkpoint

    return ensure_checkpoint(FACE_PARSERS[DEFAULT_PARSER], cache_dir, progress, verify=verify_face_parser)
