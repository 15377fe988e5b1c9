"""``fomm-lab animate-pairs --pairs pairs.csv --out DIR``: many (source, driving) animations with one model
(the paper's ``animate`` mode).

The CSV has a header row naming at least the columns ``source`` and ``driving`` (the layout of the paper's
``data/*.csv`` pair lists; other columns are ignored) and optionally ``output``. Paths are relative to the
CSV's folder. A source is a photo, or a video or folder of frames whose first frame is the source (as in the
paper, where sources are test videos). The result of a pair goes to ``output`` (relative to ``DIR``), by
default ``DIR/SOURCE-DRIVING.mp4`` (the two names without their extensions).

Each pair runs through one :class:`~fomm_lab.pipeline.session.Animation` -- streamed, written atomically --
with the model loaded once. A pair whose output exists already is skipped (re-running finishes an interrupted batch); a
pair that fails does not stop the others: every failure is reported at the end.
"""

from __future__ import annotations

import csv
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FommLabError, MediaError
from ..io.image import IMAGE_SUFFIXES
from .job import AnimateJob, CropOptions, MotionOptions, OutputOptions, RuntimeOptions
from .session import Animation

if TYPE_CHECKING:
    from ..engine.family import MotionModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    """One animation: ``source`` photo (or video), ``driving`` video, ``output`` file; ``line`` in the CSV."""

    source: Path
    driving: Path
    output: Path
    line: int = 0


@dataclass
class PairsResult:
    """Outputs written, pairs skipped (their output was there) and pairs that failed, with the error."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Pair, Exception]] = field(default_factory=list)


def _name(path: Path) -> str:
    return path.name if path.is_dir() else path.stem


def read_pairs(csv_path: str | Path, out: str | Path) -> list[Pair]:
    """The pairs of a CSV (see the module's description); FommLabError naming the file and line when it is
    malformed. Outputs default to ``out/SOURCE-DRIVING.mp4``."""
    csv_path, out = Path(csv_path), Path(out)
    if not csv_path.is_file():
        raise FommLabError(f"pairs file {csv_path} does not exist; give a CSV with the columns source,driving")
    base = csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise FommLabError(f"pairs file {csv_path} is not a readable CSV: {exc}") from exc
    if not rows:
        raise FommLabError(f"pairs file {csv_path} is empty; give a header row source,driving and one row per pair")
    header = [cell.strip().lower() for cell in rows[0]]
    missing = [name for name in ("source", "driving") if name not in header]
    if missing:
        raise FommLabError(f"pairs file {csv_path}: the header row {','.join(rows[0])!r} has no "
                           f"{' or '.join(missing)} column; the first row must name the columns (source,driving"
                           "[,output])")
    src, drv = header.index("source"), header.index("driving")
    outcol = header.index("output") if "output" in header else None
    pairs: list[Pair] = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(src, drv) or not row[src].strip() or not row[drv].strip():
            raise FommLabError(f"pairs file {csv_path}, line {number}: needs a source and a driving video, got "
                               f"{','.join(row)!r}")
        source, driving = base / row[src].strip(), base / row[drv].strip()
        given = row[outcol].strip() if outcol is not None and len(row) > outcol else ""
        output = out / given if given else out / f"{_name(source)}-{_name(driving)}.mp4"
        pairs.append(Pair(source, driving, output, number))
    if not pairs:
        raise FommLabError(f"pairs file {csv_path} has a header but no pairs")
    seen: dict[Path, Pair] = {}
    for pair in pairs:
        if pair.output in seen:
            raise FommLabError(f"pairs file {csv_path}: lines {seen[pair.output].line} and {pair.line} both write "
                               f"{pair.output}; give one of them another output")
        seen[pair.output] = pair
    return pairs


def source_photo(source: Path, workdir: Path) -> Path:
    """The photo to animate: ``source`` itself, or the first frame of a video / folder of frames (as a PNG in
    ``workdir``)."""
    if source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        return source
    from ..io.image import save_png
    from ..io.video import read_video

    if not source.exists():
        raise MediaError(f"source {source} does not exist; check the pairs file")
    with read_video(source) as reader:
        first = next(iter(reader), None)
    if first is None:
        raise MediaError(f"source video {source} holds no frame")
    return save_png(workdir / f"{_name(source)}-first-frame.png", first)


def animate_pairs(pairs: Sequence[Pair], model: MotionModel, *, motion=None, crop=None, runtime=None,
                  audio: bool = True, progress: bool = True, say: Callable[[str], None] = log.info) -> PairsResult:
    """Run every pair with ``model`` (see the module's description). ``motion``, ``crop`` and ``runtime`` are the
    pipeline's options (None: its defaults; cropping then follows the model's config, as in ``animate``);
    ``audio``: keep the driving videos' sound."""
    from tqdm.auto import tqdm


    result = PairsResult()
    config_ref = model.config.path if model.config.path is not None else model.config.name
    with tempfile.TemporaryDirectory(prefix="fomm-lab-pairs-") as tmp:
        workdir = Path(tmp)
        for pair in tqdm(pairs, desc="animating pairs", unit="pair", disable=not progress):
            if pair.output.exists():
                result.skipped.append(pair.output)
                continue
            try:
                pair.output.parent.mkdir(parents=True, exist_ok=True)
                job = AnimateJob(source=source_photo(pair.source, workdir), driving=pair.driving, model=config_ref,
                                 motion=motion or MotionOptions(), crop=crop or CropOptions(),
                                 output=OutputOptions(video=pair.output, audio=audio),
                                 runtime=runtime or RuntimeOptions())
                Animation(job, model=model, progress=False).run()
            except (FommLabError, OSError) as exc:
                result.failed.append((pair, exc))
                say(f"pair on line {pair.line} ({pair.source.name}, {pair.driving.name}) failed: "
                    f"{exc.first_line() if isinstance(exc, FommLabError) else exc}")
                continue
            result.written.append(pair.output)
            say(f"wrote {pair.output}")
    return result
