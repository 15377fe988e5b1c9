"""The fastest exact form of each fused convolution, measured on this machine and cached.

A :class:`~.conv.FusedConv` can compute its convolution in several exact forms (:data:`~.conv.FORMS`): oneDNN's
direct convolution, Winograd's minimal filtering F(4x4, 3x3) / F(3x3, 2x2) (Lavin & Gray, CVPR 2016; float32 on
the CPU) and F(2x2, 3x3) (bfloat16, channels-last; within a few bfloat16 rounding steps, test_winograd_f2.py), the
direct convolution in the other memory layout (NCHW <-> channels-last, the output given back in
the input's layout), the direct convolution with its weights packed once in oneDNN's blocked layout (small
maps), and, for layers of a few output channels, one matrix product per tap and the taps' shifted sums. In exact
arithmetic they are the same convolution; in float32 they differ by rounding only, within the bounds of
tests/engine/test_winograd.py, test_taps.py and test_fuse.py. Which one is fastest depends on the CPU (its vector
units and caches, and oneDNN's kernels for them: Winograd's batched matrix products pay on a Xeon with AMX and
lose on an EPYC with AVX512-BF16), the thread count, the torch version, the precision and the layer's shape,
while the untuned rule (:meth:`~.conv.FusedConv.default_form`) was fixed on one machine. So:

1. **capture**: one synthetic frame runs through the networks (the source side, then a batch of driving
   frames), recording each fused convolution's input (shape, dtype, layout, autocast): the distinct layers
   (:class:`Layer`), with how often each runs per source and per frame;
2. **measure** each layer's candidate forms (:attr:`Layer.candidates`: ``direct`` always, ``winograd`` where it
   applies, the other layout) on a random input of its shape: one warm-up call, then the best of
   :data:`REPEATS` timed samples (:func:`time_call`);
3. **choose** the fastest, keeping the untuned form unless another is at least :data:`MARGIN` faster
   (:func:`choose`): a tuned layer is never slower than the untuned one beyond measurement noise;
4. **cache** the choices and their times as JSON in ``<cache>/tuning/`` (the checkpoint cache folder:
   ``$FOMM_LAB_HOME``, else ``$XDG_CACHE_HOME/fomm-lab`` or ``~/.cache/fomm-lab``), one file per device,
   precision and thread count (:func:`cache_path`) holding its machine key (CPU model and flags, threads, torch
   version, precision: :func:`machine_key`). A file whose key differs (another CPU or torch) or that does not
   parse is never used: tuning re-measures and rewrites it atomically (:mod:`fomm_lab.io.atomic`);
5. **apply**: each fused convolution gets its choices (:attr:`~.conv.FusedConv.forms`), eager calls only.

Each tuning also measures the machine's reference rate in its precision (:func:`reference_rate`: one 3x3
convolution, 256 channels, 64x64, channels-last): the ceiling ``bench_engine.py`` compares against, and what
``dtype="auto"`` weighs (:func:`measured_rates`, :func:`fomm_lab.device.auto_dtype`).

The networks use the cache when it is there (:func:`use_tuning`, from
:func:`~.variants.inference_networks`); measuring happens only when asked: ``fomm-lab tune``,
``Animator(tune=True)`` or :func:`tune_networks`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...device import DTYPES, cpu_info
from ...errors import FommLabError
from ...hub.registry import cache_dir as resolve_cache_dir
from ...io.atomic import atomic_output
from ..family import InferenceNetworks, MotionModel
from ..frames import frames_to_tensor
from .conv import FORMS, PACKED_MAX_PIXELS, FusedConv, input_signature

log = logging.getLogger(__name__)

FORMAT = 1
"""Version of the cache file's layout (a file of another version is re-measured)."""

MARGIN = 0.03
"""A form replaces the untuned one only when it is at least this much faster (3 %): below, the difference is
within the timing noise, and the untuned form is kept."""

REPEATS = 3
"""Timed samples per candidate form (the best is kept), after one warm-up call."""

MIN_SAMPLE_S = 0.002
"""Each timed sample repeats the call until it lasts at least this long (small layers)."""

REFERENCE_CHANNELS, REFERENCE_SIDE = 256, 64
"""The reference convolution: 3x3, 256 -> 256 channels, on a 64x64 map, channels-last, batch 1."""

Timer = Callable[[str, str, Callable[[], object]], float]
"""How a tuning times one candidate: (layer label, form, a call running it) -> seconds per call."""


def _dtype_text(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _pair(value: int | tuple[int, ...]) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (tuple, list)) else [int(value), int(value)]


# ----------------------------------------------------------------------------- keys and files


def machine_key(dtype: torch.dtype, device: torch.device | str = "cpu") -> dict[str, Any]:
    """What a cache file's choices are valid for: the device type, the CPU model and its speed flags, the torch
    thread count, the torch version and the precision."""
    cpu = cpu_info()
    return {"device": torch.device(device).type, "cpu": cpu.model, "flags": list(cpu.flags),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "precision": _dtype_text(dtype)}


def cache_path(dtype: torch.dtype, device: torch.device | str = "cpu",
               cache_dir: str | Path | None = None) -> Path:
    """``<cache>/tuning/<device>-<precision>-<N>threads.json`` for the current torch thread count."""
    root = resolve_cache_dir(cache_dir, create=False)
    return root / "tuning" / f"{torch.device(device).type}-{_dtype_text(dtype)}-{torch.get_num_threads()}threads.json"


def conv_params(module: FusedConv) -> dict[str, Any]:
    """The convolution a fused module computes, as the cache names it: weight shape (Cout, Cin / groups, kh, kw)
    and dtype, stride, padding, dilation, groups."""
    return {"weight": [int(s) for s in module.weight.shape], "dtype": _dtype_text(module.weight.dtype),
            "stride": _pair(module.stride), "padding": _pair(module.padding), "dilation": _pair(module.dilation),
            "groups": int(module.groups)}


def input_params(x: torch.Tensor) -> dict[str, Any]:
    """A convolution's input as the cache names it: shape (N, C, H, W), dtype, channels-last or not, and the
    CPU autocast precision in force (None: off) (:func:`~.conv.input_signature`)."""
    shape, dtype, last, autocast = input_signature(x)
    return {"shape": list(shape), "dtype": _dtype_text(dtype), "channels_last": last,
            "autocast": None if autocast is None else _dtype_text(autocast)}


def signature_of(params: Mapping[str, Any]) -> tuple:
    """The :func:`~.conv.input_signature` that :func:`input_params` describes."""
    autocast = params["autocast"]
    return (tuple(params["shape"]), DTYPES[params["dtype"]], bool(params["channels_last"]),
            None if autocast is None else DTYPES[autocast])


def _key(conv: Mapping[str, Any], inp: Mapping[str, Any] | None = None) -> str:
    return json.dumps([conv, inp] if inp is not None else conv, sort_keys=True)


def layer_label(conv: Mapping[str, Any], inp: Mapping[str, Any]) -> str:
    """``3x3 64->64 @ 1x64x64``: kernel, input -> output channels, input batch x height x width, then what is not
    the plain case: stride, groups, a channels-last input (``NHWC``), an input dtype other than the weights' and
    an autocast precision other than the weights'. One line of the tuning table."""
    cout, cin, kh, kw = conv["weight"]
    groups = conv["groups"]
    text = f"{kh}x{kw} {cin * groups}->{cout}"
    if conv["stride"] != [1, 1]:
        text += f" s{conv['stride'][0]}" if conv["stride"][0] == conv["stride"][1] else f" s{conv['stride']}"
    if groups > 1:
        text += f" g{groups}"
    n, _, h, w = inp["shape"]
    text += f" @ {n}x{h}x{w}"
    if inp["channels_last"]:
        text += " NHWC"
    if inp["dtype"] != conv["dtype"]:
        text += f" ({inp['dtype']} input)"
    if inp["autocast"] and inp["autocast"] != conv["dtype"]:
        text += f" (autocast {inp['autocast']})"
    elif conv["dtype"] != "float32" and not inp["autocast"]:
        text += " (no autocast)"
    return text


@dataclass(frozen=True)
class CacheFile:
    """A valid cache file: its machine key, reference rate (GFLOP/s) and entries by layer key (each
    ``{"conv", "input", "choice", "ms"}``)."""

    machine: dict[str, Any]
    reference_gflops: float | None
    entries: dict[str, dict[str, Any]]


def _positive_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _int_list(value: object, length: int, minimum: int) -> bool:
    return (isinstance(value, list) and len(value) == length
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value))


def _entry_problem(entry: object) -> str | None:
    """What is wrong with one layer entry of a cache file (None: nothing)."""
    if not isinstance(entry, dict) or not {"conv", "input", "choice", "ms"} <= set(entry):
        return "a layer entry lacks conv, input, choice or ms"
    conv, inp, choice, ms = entry["conv"], entry["input"], entry["choice"], entry["ms"]
    if not isinstance(conv, dict) or not _int_list(conv.get("weight"), 4, 1) or conv.get("dtype") not in DTYPES \
            or not _int_list(conv.get("stride"), 2, 1) or not _int_list(conv.get("padding"), 2, 0) \
            or not _int_list(conv.get("dilation"), 2, 1) or not _int_list([conv.get("groups")], 1, 1):
        return f"a layer's conv is malformed: {conv!r}"[:200]
    if not isinstance(inp, dict) or not _int_list(inp.get("shape"), 4, 1) or inp.get("dtype") not in DTYPES \
            or not isinstance(inp.get("channels_last"), bool) or (inp.get("autocast") not in (None, *DTYPES)):
        return f"a layer's input is malformed: {inp!r}"[:200]
    if choice not in FORMS:
        return f"unknown form {choice!r} (known: {', '.join(FORMS)})"
    if not isinstance(ms, dict) or choice not in ms \
            or not all(f in FORMS and _positive_number(t) for f, t in ms.items()):
        return f"a layer's times are malformed: {ms!r}"[:200]
    return None


def read_cache(path: Path, machine: Mapping[str, Any]) -> tuple[CacheFile | None, str]:
    """The cache file at ``path`` when it is valid for ``machine`` (:func:`machine_key`), and how it was found:
    ``ok``, ``absent``, ``corrupt (why)`` or ``stale (what differs)``; never raises for a bad file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, "absent"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"corrupt (unreadable: {exc})"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"corrupt (not JSON: {exc})"
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None, f"corrupt (not a format-{FORMAT} tuning file)"
    if not isinstance(data.get("machine"), dict) or not isinstance(data.get("layers"), list):
        return None, "corrupt (no machine key or no layers)"
    rate = data.get("reference_gflops")
    if rate is not None and not _positive_number(rate):
        return None, f"corrupt (reference_gflops {rate!r} is not a positive number)"
    for entry in data["layers"]:
        problem = _entry_problem(entry)
        if problem is not None:
            return None, f"corrupt ({problem})"
    differs = [name for name in machine if data["machine"].get(name) != machine[name]]
    if differs:
        was = ", ".join(f"{name} {data['machine'].get(name)!r}" for name in differs)
        return None, f"stale (measured with {was})"
    entries = {_key(e["conv"], e["input"]): e for e in data["layers"]}
    return CacheFile(dict(data["machine"]), None if rate is None else float(rate), entries), "ok"


def write_cache(path: Path, machine: Mapping[str, Any], reference_gflops: float | None,
                entries: Iterable[Mapping[str, Any]]) -> None:
    """Write a cache file atomically (a temporary sibling renamed onto ``path``: readers never see half a file)."""
    data = {"format": FORMAT, "machine": dict(machine), "reference_gflops": reference_gflops,
            "layers": sorted((dict(e) for e in entries), key=lambda e: _key(e["conv"], e["input"]))}
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------- the networks' convolutions


def fused_convs(nets: InferenceNetworks | nn.Module) -> list[FusedConv]:
    """Every fused convolution the networks hold (found through their modules, bound methods and the objects
    wrapping them), each once."""
    roots: list[nn.Module] = []
    pending: list[tuple[object, int]] = [(nets, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, nn.Module):
            roots.append(item)
            continue
        owner = getattr(item, "__self__", None)
        if isinstance(owner, nn.Module):
            roots.append(owner)
        elif depth < 3 and is_dataclass(item) and not isinstance(item, type):
            pending.extend((getattr(item, f.name), depth + 1) for f in fields(item))
        elif depth < 3 and hasattr(item, "__dict__") and not isinstance(item, type):
            pending.extend((value, depth + 1) for value in vars(item).values())
    found: dict[int, FusedConv] = {}
    for root in roots:
        for module in root.modules():
            if isinstance(module, FusedConv):
                found.setdefault(id(module), module)
    return list(found.values())


@dataclass
class Layer:
    """One distinct convolution the networks run: ``conv`` (:func:`conv_params`) on ``input``
    (:func:`input_params`), by ``modules``; ``calls``: how many times per source (``source``) and per batch of
    driving frames (``frame``); ``default``: its untuned form; ``candidates``: the forms measured."""

    conv: dict[str, Any]
    input: dict[str, Any]
    modules: list[FusedConv]
    default: str
    candidates: tuple[str, ...]
    calls: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return _key(self.conv, self.input)

    @property
    def label(self) -> str:
        return layer_label(self.conv, self.input)


def candidate_forms(module: FusedConv, x: torch.Tensor) -> tuple[str, ...]:
    """The exact forms worth measuring for ``module`` on ``x``: ``direct``; ``winograd`` where it applies; the
    other memory layout (``channels_last`` for an NCHW input, ``contiguous`` for a channels-last one); ``packed``
    where it applies, on inputs of at most :data:`~.conv.PACKED_MAX_PIXELS` pixels; ``taps`` where it applies
    (layers of a few output channels); ``winograd_f2`` where it applies (bfloat16 channels-last 3x3 layers);
    ``winograd_onednn`` where it applies (the float32 Winograd layers, tile-major)."""
    forms = ["direct"]
    if module.winograd_applies(x):
        forms.append("winograd")
    if module.winograd_onednn_applies(x):
        forms.append("winograd_onednn")
    forms.append("contiguous" if input_signature(x)[2] else "channels_last")
    if x.shape[2] * x.shape[3] <= PACKED_MAX_PIXELS and module.packed_applies(x):
        forms.append("packed")
    if module.taps_applies(x):
        forms.append("taps")
    if module.winograd_f2_applies(x):
        forms.append("winograd_f2")
    return tuple(forms)


def synthetic_frame(model: MotionModel, seed: int = 0) -> np.ndarray:
    """A uint8 (H, W, 3) frame of the model's size (smooth noise: timing does not depend on the content)."""
    width, height = model.frame_size
    rng = np.random.default_rng(seed)
    coarse = rng.random((max(height // 8, 1), max(width // 8, 1), 3))
    frame = np.kron(coarse, np.ones((8, 8, 1)))[:height, :width]
    frame = np.pad(frame, ((0, height - frame.shape[0]), (0, width - frame.shape[1]), (0, 0)), mode="edge")
    return (frame * 255).astype(np.uint8)


@torch.inference_mode()
def capture_layers(model: MotionModel, nets: InferenceNetworks, *, batch_size: int = 1) -> list[Layer]:
    """The distinct fused convolutions the networks run for one source and one batch of ``batch_size`` driving
    frames, in order of first use (the networks run as the Animator runs them, on a synthetic frame)."""
    found: dict[str, Layer] = {}
    phase = ["source"]

    def record(module: nn.Module, args: tuple) -> None:
        if not isinstance(module, FusedConv) or not args or not isinstance(args[0], torch.Tensor) or args[0].dim() != 4:
            return
        x = args[0]
        conv, inp = conv_params(module), input_params(x)
        key = _key(conv, inp)
        layer = found.get(key)
        if layer is None:
            layer = found[key] = Layer(conv, inp, [], module.default_form(x), candidate_forms(module, x))
        if all(m is not module for m in layer.modules):
            layer.modules.append(module)
        layer.calls[phase[0]] = layer.calls.get(phase[0], 0) + 1

    device = model.device
    frame = synthetic_frame(model)
    handle = nn.modules.module.register_module_forward_pre_hook(record)
    try:
        source = frames_to_tensor([frame], model.frame_size, device, nets.channels_last)
        with nets.autocast_to(device.type, nets.keypoint_dtype):
            keypoints = nets.kp_detector(source)
        state = nets.prepare(source, keypoints)
        phase[0] = "frame"
        driving = frames_to_tensor([frame] * batch_size, model.frame_size, device, nets.channels_last)
        with nets.autocast_to(device.type, nets.keypoint_dtype):
            driving_keypoints = nets.kp_detector(driving)
        with nets.autocast_to(device.type):
            nets.generate(state, driving_keypoints)
    finally:
        handle.remove()
    return list(found.values())


# ----------------------------------------------------------------------------- measuring


def time_call(run: Callable[[], object], *, clock: Callable[[], float] = time.perf_counter, repeats: int = REPEATS,
              min_sample: float = MIN_SAMPLE_S) -> float:
    """Seconds per call of ``run``: one warm-up call (oneDNN's primitive, Winograd's kernel transform, the
    allocations), then the best of ``repeats`` samples, each repeating the call until it lasts ``min_sample``
    (wall time: the best sample is the one least disturbed by other processes)."""
    run()
    start = clock()
    run()
    once = max(clock() - start, 1e-9)
    inner = max(1, min(1000, math.ceil(min_sample / once)))
    best = once
    for _ in range(repeats):
        start = clock()
        for _ in range(inner):
            run()
        best = min(best, (clock() - start) / inner)
    return best


def default_timer(label: str, form: str, run: Callable[[], object]) -> float:
    """The :data:`Timer` tunings use unless given another: :func:`time_call`."""
    return time_call(run)


def form_runner(layer: Layer, form: str) -> Callable[[], object]:
    """A call running ``layer``'s first module in ``form`` on a random input of its shape, dtype, layout and
    autocast (the module's own forward, so exactly what a tuned call runs)."""
    module = layer.modules[0]
    signature = signature_of(layer.input)
    shape, dtype, last, autocast = signature
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype=dtype, device=module.weight.device)
    if last:
        x = x.contiguous(memory_format=torch.channels_last)
    forms = {signature: form}

    def run() -> object:
        saved = module.forms
        module.forms = forms
        try:
            with torch.autocast("cpu", dtype=autocast) if autocast is not None else nullcontext():
                return module(x)
        finally:
            module.forms = saved

    return run


def choose(ms: Mapping[str, float], default: str, margin: float = MARGIN) -> str:
    """The fastest form of ``ms`` (form -> time), unless it is less than ``margin`` faster than ``default``."""
    best = min(ms, key=lambda form: ms[form])
    return best if ms[best] < ms[default] * (1 - margin) else default


def reference_rate(dtype: torch.dtype, timer: Timer | None = None) -> float:
    """This machine's rate in GFLOP/s (2 flops per multiply-add) for the reference convolution: 3x3,
    :data:`REFERENCE_CHANNELS` channels in and out, :data:`REFERENCE_SIDE` x :data:`REFERENCE_SIDE`, batch 1,
    channels-last, in ``dtype``, at the current torch thread count (oneDNN's direct convolution: the ceiling a
    network of such layers can reach)."""
    c, side = REFERENCE_CHANNELS, REFERENCE_SIDE
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, c, side, side, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    w = (torch.randn(c, c, 3, 3, generator=g) / (9 * c) ** 0.5).to(dtype).contiguous(memory_format=torch.channels_last)
    b = torch.zeros(c, dtype=dtype)
    with torch.inference_mode():
        seconds = (timer or default_timer)(f"reference 3x3 {c}->{c} @ 1x{side}x{side} NHWC", _dtype_text(dtype),
                                           lambda: F.conv2d(x, w, b, padding=1))
    return 2 * c * c * 9 * side * side / seconds / 1e9


# ----------------------------------------------------------------------------- results


@dataclass
class LayerChoice:
    """One layer's tuning: its times per candidate form (ms per call), the form kept, and whether it was measured
    now (False: taken from the cache)."""

    layer: Layer
    ms: dict[str, float]
    choice: str
    measured: bool


@dataclass
class Tuning:
    """A tuning of one model's networks in one precision: the layers' choices, the reference rate (GFLOP/s), the
    cache file and its machine key; ``batch_size``: driving frames per batch of the capture."""

    dtype: torch.dtype
    path: Path
    machine: dict[str, Any]
    choices: list[LayerChoice]
    reference_gflops: float | None
    batch_size: int = 1

    def per_frame_ms(self, *, tuned: bool) -> float | None:
        """The layers' summed time per driving frame, tuned or untuned (None when a time is missing)."""
        total = 0.0
        for c in self.choices:
            form = c.choice if tuned else c.layer.default
            if form not in c.ms:
                return None
            total += c.ms[form] * c.layer.calls.get("frame", 0) / self.batch_size
        return total

    def table(self) -> list[str]:
        """The per-layer table: shape, calls, each candidate's ms per call, the untuned and the chosen form."""
        forms = [f for f in FORMS if any(f in c.ms for c in self.choices)]
        width = max([len("layer"), *(len(c.layer.label) for c in self.choices)])
        head = f"{'layer':{width}}  {'calls':>7}  " + "  ".join(f"{f:>13}" for f in forms) + "  untuned -> chosen"
        lines = [head, "-" * len(head)]
        for c in self.choices:
            calls = c.layer.calls
            where = f"{calls['frame']}/frame" if calls.get("frame") else f"{calls.get('source', 0)}/src"
            times = "  ".join(f"{c.ms[f]:13.3f}" if f in c.ms else f"{'':13}" for f in forms)
            mark = "" if c.choice == c.layer.default else "  *"
            cached = "" if c.measured else "  (cached)"
            lines.append(f"{c.layer.label:{width}}  {where:>7}  {times}  {c.layer.default} -> {c.choice}{mark}{cached}")
        untuned, tuned = self.per_frame_ms(tuned=False), self.per_frame_ms(tuned=True)
        if untuned is not None and tuned is not None and tuned > 0:
            lines.append(f"per driving frame (sum of the layers' ms x calls): untuned {untuned:.1f} ms, tuned "
                         f"{tuned:.1f} ms ({untuned / tuned:.2f}x)")
        if self.reference_gflops is not None:
            lines.append(f"reference 3x3 convolution ({REFERENCE_CHANNELS} channels, {REFERENCE_SIDE}x"
                         f"{REFERENCE_SIDE}, channels-last): {self.reference_gflops:.1f} GFLOP/s in "
                         f"{_dtype_text(self.dtype)}")
        return lines


# ----------------------------------------------------------------------------- tuning and using it


def apply_choices(nets: InferenceNetworks | nn.Module, entries: Iterable[Mapping[str, Any]]) -> int:
    """Give each fused convolution of ``nets`` the chosen forms of the entries whose convolution is its own (and
    no others: modules without entries run the untuned rule); returns how many (module, input) choices were set."""
    table: dict[str, dict[tuple, str]] = {}
    for entry in entries:
        table.setdefault(_key(entry["conv"]), {})[signature_of(entry["input"])] = entry["choice"]
    count = 0
    for module in fused_convs(nets):
        forms = table.get(_key(conv_params(module)))
        module.forms = dict(forms) if forms else None
        count += len(forms or ())
    return count


def clear_choices(nets: InferenceNetworks | nn.Module) -> None:
    """Back to the untuned rule in every fused convolution of ``nets``."""
    for module in fused_convs(nets):
        module.forms = None


def _memo_key(dtype: torch.dtype) -> tuple[str, torch.dtype]:
    return ("tuning", dtype)


def _stamp(path: Path) -> tuple:
    try:
        stat = path.stat()
    except OSError:
        return (str(path), None)
    return (str(path), stat.st_mtime_ns, stat.st_size)


def tune_networks(model: MotionModel, nets: InferenceNetworks, dtype: torch.dtype, *, batch_size: int = 1,
                  cache_dir: str | Path | None = None, timer: Timer | None = None, remeasure: bool = True) -> Tuning:
    """Measure the candidate forms of every layer ``nets`` (``model``'s eager torch networks in ``dtype``, on the
    CPU) run, keep the fastest, write the cache file and apply the choices.

    remeasure: measure every layer (``fomm-lab tune``); False: only the layers a valid cache file lacks (first
    use with ``tune=True``). A stale or corrupt file is re-measured whole. timer: how candidates are timed
    (default :func:`time_call`). Takes a few times one frame's time per candidate form (seconds)."""
    if model.device.type != "cpu":
        raise FommLabError(f"tuning measures the CPU's convolution forms; this model runs on {model.device}, where "
                           "nothing is tuned (load it on the CPU to tune)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    timer = timer or default_timer
    machine = machine_key(dtype, model.device)
    path = cache_path(dtype, model.device, cache_dir)
    cached, status = read_cache(path, machine)
    if status.startswith(("stale", "corrupt")):
        log.info("tuning cache %s is %s: measuring again", path, status)
    entries = dict(cached.entries) if cached is not None else {}
    clear_choices(nets)  # capture and measure the untuned networks
    layers = capture_layers(model, nets, batch_size=batch_size)
    choices = []
    with torch.inference_mode():
        for layer in layers:
            entry = entries.get(layer.key)
            if entry is not None and not remeasure and set(layer.candidates) <= set(entry["ms"]):
                choices.append(LayerChoice(layer, dict(entry["ms"]), entry["choice"], measured=False))
                continue
            module = layer.modules[0]
            kernels, f2 = module.winograd_kernels, module.winograd_f2_kernels
            ms = {form: 1000 * timer(layer.label, form, form_runner(layer, form)) for form in layer.candidates}
            module.winograd_kernels, module.winograd_f2_kernels = kernels, f2  # made on first use if chosen
            choice = choose(ms, layer.default)
            entries[layer.key] = {"conv": layer.conv, "input": layer.input, "choice": choice, "ms": ms}
            choices.append(LayerChoice(layer, ms, choice, measured=True))
    rate = cached.reference_gflops if cached is not None and not remeasure else None
    if rate is None:
        rate = reference_rate(dtype, timer)
    if cached is None or any(c.measured for c in choices) or rate != cached.reference_gflops:
        resolve_cache_dir(cache_dir)  # created, and writable (DownloadError saying which folder otherwise)
        write_cache(path, machine, rate, entries.values())
    apply_choices(nets, entries.values())
    tuning = Tuning(dtype, path, machine, choices, rate, batch_size)
    model._inference[_memo_key(dtype)] = (_stamp(path), tuning)
    return tuning


def use_tuning(model: MotionModel, nets: InferenceNetworks, dtype: torch.dtype, *, tune: bool | None = None,
               batch_size: int = 1, cache_dir: str | Path | None = None) -> CacheFile | Tuning | None:
    """Apply this machine's tuning to ``model``'s eager torch networks ``nets`` in ``dtype`` (CPU).

    tune None: the cache file's choices when it is valid for this machine (a stale or corrupt one is logged and
    not used: the untuned rule runs); True: first measure what the cache lacks (:func:`tune_networks`, seconds);
    False: the untuned rule, whatever the cache holds. The networks' modules are shared by every Animator of the
    model, so the last choice made for a precision holds for all of them. Returns what was applied (None: the
    untuned rule)."""
    key = _memo_key(dtype)
    if tune is False:
        clear_choices(nets)
        model._inference.pop(key, None)
        return None
    if tune:
        memo = model._inference.get(key)
        if memo is not None and memo[0] == _stamp(cache_path(dtype, model.device, cache_dir)) \
                and isinstance(memo[1], Tuning) and memo[1].batch_size == batch_size:
            return memo[1]  # tuned in this process, the cache file unchanged since
        try:
            return tune_networks(model, nets, dtype, batch_size=batch_size, cache_dir=cache_dir, remeasure=False)
        except FommLabError as exc:  # an unwritable cache folder: the choices still apply in this process
            log.warning("tuning could not be cached: %s", exc)
            memo = model._inference.get(key)
            return memo[1] if memo else None
    path = cache_path(dtype, model.device, cache_dir)
    stamp = _stamp(path)
    memo = model._inference.get(key)
    if memo is not None and memo[0] == stamp:
        return memo[1]
    cached, status = read_cache(path, machine_key(dtype, model.device))
    if cached is None:
        if status != "absent":
            log.warning("the tuning cache %s is %s: not used (`fomm-lab tune` measures this machine again)",
                        path, status)
        clear_choices(nets)
    else:
        apply_choices(nets, cached.entries.values())
    model._inference[key] = (stamp, cached)
    return cached


def measured_rates(device: torch.device | str = "cpu", cache_dir: str | Path | None = None
                   ) -> dict[torch.dtype, float]:
    """The reference rates (GFLOP/s) of the precisions this machine was tuned in, at the current thread count,
    from valid cache files only (what ``dtype="auto"`` weighs: :func:`fomm_lab.device.auto_dtype`)."""
    rates: dict[torch.dtype, float] = {}
    if torch.device(device).type != "cpu":
        return rates
    for dtype in (torch.float32, torch.bfloat16):
        cached, _ = read_cache(cache_path(dtype, device, cache_dir), machine_key(dtype, device))
        if cached is not None and cached.reference_gflops is not None:
            rates[dtype] = cached.reference_gflops
    return rates
