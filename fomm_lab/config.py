"""Model configs in the official yaml layout (``model_params`` with ``common_params``,
``kp_detector_params``, ``generator_params``), shipped as package data and loadable from a path."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from .errors import ConfigError

_REQUIRED = ("common_params", "kp_detector_params", "generator_params")


def available_configs() -> list[str]:
    """Names of the shipped configs (e.g. ``vox-256``), sorted."""
    folder = resources.files("fomm_lab") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def config_path(name: str) -> Path:
    """Path of the shipped config ``name`` (ConfigError listing the known names if unknown)."""
    names = available_configs()
    if name not in names:
        from .registry import available_models

        raise ConfigError(
            f"unknown model {name!r}: use a checkpoint name ({', '.join(available_models())}), "
            f"a shipped config ({', '.join(names)}) or a .yaml path"
        )
    return Path(str(resources.files("fomm_lab") / "configs" / f"{name}.yaml"))


def load_config(name_or_path: str | Path) -> dict:
    """Read a config by shipped name or yaml path and check it has the model sections."""
    text = str(name_or_path)
    path = Path(text) if (text.endswith((".yaml", ".yml")) or Path(text).exists()) else config_path(text)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; shipped configs: {', '.join(available_configs())}")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    params = config.get("model_params") if isinstance(config, dict) else None
    missing = [key for key in _REQUIRED if not isinstance(params, dict) or key not in params]
    if missing:
        raise ConfigError(
            f"config file {path} has no model_params.{', model_params.'.join(missing)}; "
            "it must follow the official FOMM layout (see the shipped vox-256.yaml)"
        )
    if "dense_motion_params" not in params["generator_params"]:
        raise ConfigError(f"config file {path} has no model_params.generator_params.dense_motion_params")
    return config
