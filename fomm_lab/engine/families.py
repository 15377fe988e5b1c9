"""The model families the engine knows, and the one place a config or checkpoint reference becomes a model.

A :class:`Family` recognises its configs (shipped names, or a yaml document in its authors' layout), parses
them and loads a :class:`~fomm_lab.engine.family.MotionModel`. :func:`load_model` and :func:`load_any_config`
try the families of :data:`FAMILIES` in order; a new family is one more entry there (the pipeline, the CLI and
the lab are written against the interface and need no change).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import ConfigError

if TYPE_CHECKING:
    from .family import MotionModel


@dataclass(frozen=True)
class Family:
    """One model family as the loaders see it.

    name: ``fomm``, ``tpsmm`` ...; shipped: its shipped config names -> their config (no file read);
    recognises: whether a parsed yaml document is in this family's layout; parse: (document, name, path) -> its
    config; load: (config, checkpoint or None, device, fuse) -> the model; verify: path -> None, or
    CheckpointError when the file is not a checkpoint of this family (read without running code; the check a
    download or a placed file of the registry passes before it is used; default: any dict that torch reads
    safely).
    """

    name: str
    recognises: Callable[[Any], bool]
    parse: Callable[[Any, str, Path | None], Any]
    load: Callable[..., MotionModel]
    verify: Callable[[Path], None] = lambda path: _read_safely(path)
    shipped: Callable[[str], Any | None] = lambda name: None


def _read_safely(path: Path) -> None:
    from .checkpoint import read_checkpoint

    read_checkpoint(path, required=lambda where, data: dict(data))


def _fomm() -> Family:
    from .config import available_configs, load_config, parse_config

    def load(config, checkpoint, *, device=None, fuse=True, label=None):
        from .model import load_fomm

        return load_fomm(config, checkpoint, device=device, fuse=fuse, label=label)

    def verify(path: Path) -> None:
        from .checkpoint import read_checkpoint

        read_checkpoint(path)

    return Family("fomm", lambda raw: isinstance(raw, dict) and ("model_params" in raw or "model" in raw),
                  parse_config, load, verify,
                  shipped=lambda name: load_config(name) if name in available_configs() else None)


def _tpsmm() -> Family:
    from .tpsmm.config import OFFICIAL, is_tpsmm_config, official_config, parse_tpsmm_config

    def load(config, checkpoint, *, device=None, fuse=True, label=None):
        from .tpsmm.model import load_tpsmm

        return load_tpsmm(config, checkpoint, device=device)

    def verify(path: Path) -> None:
        from .tpsmm.checkpoint import read_tpsmm_checkpoint

        read_tpsmm_checkpoint(path)

    def shipped(name: str):
        stem = name.removeprefix("tpsmm-")
        return official_config(stem) if name.startswith("tpsmm-") and stem in OFFICIAL else None

    return Family("tpsmm", is_tpsmm_config, parse_tpsmm_config, load, verify, shipped=shipped)


def families() -> tuple[Family, ...]:
    """The built-in families, most specific layout first (a TPSMM yaml also has ``model_params``)."""
    return (_tpsmm(), _fomm())


FAMILIES: Callable[[], tuple[Family, ...]] = families
"""Where the loaders get the families from (a test may put a toy family in front)."""


def family_named(name: str) -> Family:
    """The family called ``name`` (a registry entry's ``family``); ConfigError naming the known ones otherwise."""
    known = FAMILIES()
    for family in known:
        if family.name == name:
            return family
    raise ConfigError(f"no model family {name!r}; the known families are {', '.join(f.name for f in known)}")


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid YAML", details=[str(exc)]) from exc


def config_and_family(name_or_path: str | Path) -> tuple[Any, Family]:
    """The config meant by a shipped config name (any family's) or a yaml path, and its family."""
    known = FAMILIES()
    text = str(name_or_path)
    if not text.endswith((".yaml", ".yml")) and not Path(text).exists():
        for family in known:
            config = family.shipped(text)
            if config is not None:
                return config, family
        from .config import config_path

        config_path(text)  # ConfigError naming the known names
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; give a registry name (`fomm-lab models`), a shipped "
                          "config name or a yaml file")
    raw = _read_yaml(path)
    for family in known:
        if family.recognises(raw):
            return family.parse(raw, path.stem, path), family
    raise ConfigError(f"config {path} is in no known layout ({', '.join(f.name for f in known)}): neither the "
                      "First Order Motion Model's (model_params with kp_detector_params, or PaddleGAN's model), nor "
                      "the Thin-Plate Spline Motion Model's (model_params with common_params.num_tps)")


def load_any_config(name_or_path: str | Path) -> Any:
    """The config of a shipped name or yaml path, whatever its family (no torch)."""
    return config_and_family(name_or_path)[0]


def load_model(config: str | Path, checkpoint: str | Path | None = None, *, device=None,
               cache_dir: str | Path | None = None, progress: bool = True, fuse: bool = True) -> MotionModel:
    """Build a model of any family and load its weights.

    config: a registry name (``vox``, ``tpsmm-vox`` ...: its checkpoint is found in the cache or downloaded and
    verified), a shipped config name (``vox-256``) or a yaml path in a family's layout. checkpoint: the weights
    (told apart by content); None with a registry name uses the registry's; None otherwise leaves random weights
    (a warning says so). device: None picks cuda > mps > cpu. fuse: FOMM's exact inference form (False keeps
    the checkpoint's networks, for training and comparisons).
    """
    from ..hub.registry import resolve_model

    reference, entry = resolve_model(config)
    label = str(config)
    cfg, family = config_and_family(reference)
    if entry is not None:
        if checkpoint is None:  # found in the cache or downloaded, and read by its family's reader before use
            from ..hub.download import ensure_checkpoint

            checkpoint = ensure_checkpoint(entry, cache_dir, progress, verify=family.verify)
        label = f"{reference} ({entry.name})"
    model = family.load(cfg, checkpoint, device=device, fuse=fuse, label=label)
    if entry is not None:
        model.name = entry.name
    return model
