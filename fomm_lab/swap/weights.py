"""Reading the part swap's three kinds of weight files and loading them into the networks, with errors that
say which file it is, what it holds and what to give instead.

- The segment model (``vox-5segments.pth.tar`` ...), in either layout the authors' loader accepts: train.py's
  ``reconstruction_module`` / ``segmentation_module``, or FOMM's ``generator`` / ``kp_detector`` with the
  segmentation module's heads named ``kp`` (shift), ``jacobian`` (affine) and ``semantic_seg`` (segmentation).
- A First Order Motion Model checkpoint (``vox-cpk.pth.tar`` ...) for the FOMM-aligned mode: its generator's
  encoder-decoder and dense motion network, its keypoint detector run as a segmentation module's keypoint part.
- The face parser (``79999_iter.pth``): the bare state dict of BiSeNet(19).

Every file is read with ``torch.load(weights_only=True)``: nothing in it can run code.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..engine import checkpoint as engine_checkpoint
from ..engine.checkpoint import describe_mismatch, mismatch, non_finite, strip_prefix
from ..errors import CheckpointError, shorten

COMPUTED_BUFFERS = ("down.weight", "blend_downsample.weight")
"""Buffers that hold exact Gaussians computed from the config: a file that lacks them still loads."""

FOMM_NUM_KP = 10
"""The authors' FOMM alignment builds FOMM's dense motion network with 10 keypoints (the vox models')."""

_KP_LAYOUT = (("kp.", "shift."), ("jacobian.", "affine."), ("semantic_seg.", "segmentation."))


def read_weights_file(path: str | Path, what: str) -> dict:
    """The top-level dict of a torch weights file, read without running code (CheckpointError naming ``what``
    -- e.g. "face parser weights" -- when it is missing, not a torch file, damaged or holds code)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} {path} does not exist; check the path")
    engine_checkpoint._sniff(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        callables = engine_checkpoint._pickled_callables(path)
        if callables or re.search(r"unsupported global|is blocked|not an allowed global", str(exc), re.IGNORECASE):
            raise engine_checkpoint.code_refusal(path, callables) from exc
        raise CheckpointError(f"{what} {path} is not a torch weights file (its pickle cannot be read as tensors)",
                              details=[engine_checkpoint._first_line(exc)]) from exc
    except Exception as exc:  # torch raises many types (EOFError, RuntimeError ...) for damaged bytes
        raise CheckpointError(f"{what} {path} is truncated or corrupt; download it again",
                              details=[f"{type(exc).__name__}: {engine_checkpoint._first_line(exc)}"]) from exc
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{what} {path} holds a {type(data).__name__}, not a dict of weights")
    return dict(data)


def _tensors(value: object) -> dict[str, torch.Tensor]:
    return strip_prefix(value) if isinstance(value, Mapping) else {}


def describe_file(data: Mapping) -> str:
    """What a weights file is, in words, from its entries."""
    if "reconstruction_module" in data or "segmentation_module" in data:
        return "a co-part segmentation (segment model) checkpoint"
    if "generator" in data and "kp_detector" in data:
        if any(key.startswith("semantic_seg.") for key in _tensors(data["kp_detector"])):
            return "a co-part segmentation (segment model) checkpoint in FOMM's generator/kp_detector layout"
        return "a First Order Motion Model checkpoint"
    if "cp.resnet.conv1.weight" in _tensors(data):
        return "the BiSeNet face parser's weights"
    return f"a file of unknown layout (entries: {shorten([str(k) for k in data], 6) or 'none'})"


def segment_states(path: Path, data: Mapping) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(segmentation module state, reconstruction module state) of a segment checkpoint in either layout,
    the second layout's head names mapped to the first's. CheckpointError for any other file."""
    if "segmentation_module" in data and "reconstruction_module" in data:
        return _tensors(data["segmentation_module"]), _tensors(data["reconstruction_module"])
    if "generator" in data and "kp_detector" in data:
        kp_state = _tensors(data["kp_detector"])
        if not any(key.startswith("semantic_seg.") for key in kp_state):
            raise CheckpointError(
                f"{path} is {describe_file(data)}, not a co-part segmentation checkpoint: give a segment checkpoint "
                "(vox-10segments.pth.tar ...) as the checkpoint",
                details=["its kp_detector has no semantic_seg head, so it cannot segment parts",
                         "it can serve as the motion_checkpoint of the FOMM-aligned mode, beside a segment checkpoint "
                         "(vox-5segments.pth.tar, vox-10segments.pth.tar or vox-15segments.pth.tar)"])
        renamed = {}
        for key, value in kp_state.items():
            for old, new in _KP_LAYOUT:
                if key.startswith(old):
                    key = new + key[len(old):]
                    break
            renamed[key] = value
        return renamed, _tensors(data["generator"])
    raise CheckpointError(f"{path} is {describe_file(data)}, not a co-part segmentation checkpoint: give the segment "
                          "model (vox-5segments.pth.tar, vox-10segments.pth.tar or vox-15segments.pth.tar, with "
                          "reconstruction_module and segmentation_module entries or generator and kp_detector "
                          "entries holding semantic_seg)")


def fomm_states(path: Path, data: Mapping) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(keypoint detector state with its heads renamed shift/affine, generator state) of a First Order Motion
    Model checkpoint usable for the FOMM-aligned mode (10 keypoints, a dense motion network); CheckpointError
    naming the file for anything else."""
    what = describe_file(data)
    generator = _tensors(data.get("generator"))
    kp_state = _tensors(data.get("kp_detector"))
    if "generator" not in data or "kp_detector" not in data or "semantic_seg.weight" in kp_state:
        raise CheckpointError(f"motion checkpoint {path} is {what}, not a First Order Motion Model checkpoint: give "
                              "FOMM's vox-cpk.pth.tar (vox-first-order.pth.tar) as motion_checkpoint, and this file "
                              "as the segment checkpoint" if "segment" in what else
                              f"motion checkpoint {path} is {what}, not a First Order Motion Model checkpoint: give "
                              "FOMM's vox-cpk.pth.tar (vox-first-order.pth.tar)")
    if "dense_motion_network.mask.weight" not in generator or "kp.weight" not in kp_state:
        raise CheckpointError(f"motion checkpoint {path} has no dense motion network or keypoint head: it is not a "
                              "standard First Order Motion Model checkpoint; use FOMM's vox-cpk.pth.tar")
    num_kp = int(kp_state["kp.weight"].shape[0])
    if num_kp != FOMM_NUM_KP or int(generator["dense_motion_network.mask.weight"].shape[0]) != FOMM_NUM_KP + 1:
        raise CheckpointError(f"motion checkpoint {path} has {num_kp} keypoints; the FOMM-aligned part swap works "
                              f"with a {FOMM_NUM_KP}-keypoint model (the authors build its dense motion network "
                              f"with {FOMM_NUM_KP}): use FOMM's vox-cpk.pth.tar")
    renamed = {("shift." + k[3:] if k.startswith("kp.") else "affine." + k[9:] if k.startswith("jacobian.") else k): v
               for k, v in kp_state.items()}
    if "affine.weight" in renamed and renamed["affine.weight"].shape[0] != 4 * num_kp:
        raise CheckpointError(f"motion checkpoint {path} has a single shared jacobian map; the FOMM-aligned part "
                              f"swap needs one per keypoint ({4 * num_kp} channels, as in vox-cpk.pth.tar)")
    return renamed, generator


def dense_motion_params(state: Mapping[str, torch.Tensor], path: Path,
                        prefix: str = "dense_motion_network.") -> dict:
    """Keyword arguments of FOMM's DenseMotionNetwork read from the shapes of its tensors in ``state`` (the
    authors build it with FOMM's defaults -- block_expansion 64, max_features 1024, 5 blocks, scale 0.25 --
    which the published vox checkpoint has; narrower files, e.g. test fixtures, are read as they are)."""
    outs: list[int] = []
    while f"{prefix}hourglass.encoder.down_blocks.{len(outs)}.conv.weight" in state:
        outs.append(int(state[f"{prefix}hourglass.encoder.down_blocks.{len(outs)}.conv.weight"].shape[0]))
    if not outs:
        raise CheckpointError(f"motion checkpoint {path} has no dense motion hourglass "
                              f"({prefix}hourglass.encoder.down_blocks.*); use FOMM's vox-cpk.pth.tar")
    scale = 1.0
    if f"{prefix}down.weight" in state:
        size = int(state[f"{prefix}down.weight"].shape[-1])  # 2 * round(4 sigma) + 1 with sigma = (1/scale - 1) / 2
        scale = 1 / (2 * ((size - 1) / 8) + 1)
    return {"block_expansion": outs[0] // 2, "max_features": max(outs), "num_blocks": len(outs),
            "num_kp": int(state[f"{prefix}mask.weight"].shape[0]) - 1, "scale_factor": scale, "kp_variance": 0.01,
            "estimate_occlusion_map": f"{prefix}occlusion.weight" in state}


def load_state(module: nn.Module, state: Mapping[str, torch.Tensor], path: Path, name: str,
               ignore: tuple[str, ...] = ()) -> None:
    """Load ``state`` into ``module`` with every name and shape checked (CheckpointError listing what does not
    fit). Computed Gaussian buffers may be absent; names of ``state`` starting with an ``ignore`` prefix, or
    that ``module`` does not have, are not used (the authors' loader ignores them too)."""
    missing, _, shaped = mismatch(module, state)
    missing = [key for key in missing if not key.endswith(COMPUTED_BUFFERS) and not key.startswith(ignore)]
    if missing or shaped:
        raise CheckpointError(f"{path} does not fit the config: its {name} weights differ from the networks the "
                              "yaml describes; give the yaml the checkpoint was trained with",
                              details=describe_mismatch(name, missing, [], shaped))
    bad = non_finite(state)
    if bad:
        raise CheckpointError(f"{path} holds NaN or infinite weights ({shorten(bad, 3)}): it is damaged; download "
                              "it again")
    own = module.state_dict()
    module.load_state_dict({k: v for k, v in state.items() if k in own and not k.startswith(ignore)}, strict=False)


def parser_state(path: Path, data: Mapping) -> dict[str, torch.Tensor]:
    """The BiSeNet state dict of a face parser file (``module.`` prefixes removed); CheckpointError for any
    other file."""
    state = _tensors(data)
    if "cp.resnet.conv1.weight" not in state or "conv_out.conv_out.weight" not in state:
        raise CheckpointError(f"face parser weights {path} are {describe_file(data)}, not the BiSeNet face parser: "
                              "give zllrunning's face-parsing.PyTorch 79999_iter.pth as parser")
    return state
