"""The per-machine tuning of the fused convolutions' exact forms: the choice, the cache, its refusal of stale or
corrupt files, the tuned networks' exactness, ``dtype="auto"`` by measured rates and ``fomm-lab tune``.

Timings are replaced by a test double of the timer (each candidate still runs once, so every form is exercised):
the choices then follow from the times it reports, not from the load of the machine running the tests."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from speed_helpers import EXACT, GOLDEN

from fomm_lab import Animator, load_model
from fomm_lab import device as device_module
from fomm_lab.cli import main
from fomm_lab.device import CPU_FLAGS, auto_dtype, cpu_info
from fomm_lab.engine.fast import tune
from fomm_lab.engine.fast.conv import FusedConv, input_signature
from fomm_lab.engine.fast.variants import inference_networks
from fomm_lab.hub.registry import cache_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FakeTimer:
    """A :data:`~fomm_lab.engine.fast.tune.Timer` reporting ``ms[form]`` milliseconds per call (``default`` for
    other forms; ``rates``: GFLOP/s of the reference convolution per precision). Each candidate runs once, for
    real; the calls are recorded as (label, form)."""

    def __init__(self, ms: dict[str, float], default: float = 10.0, rates: dict[str, float] | None = None):
        self.ms, self.default, self.rates = ms, default, rates or {}
        self.calls: list[tuple[str, str]] = []

    def __call__(self, label: str, form: str, run) -> float:
        self.calls.append((label, form))
        if label.startswith("reference"):
            flops = 2 * tune.REFERENCE_CHANNELS**2 * 9 * tune.REFERENCE_SIDE**2
            return flops / (self.rates.get(form, 100.0) * 1e9)
        run()
        return self.ms.get(form, self.default) / 1000

    def layers(self) -> set[str]:
        return {label for label, _ in self.calls if not label.startswith("reference")}


@pytest.fixture
def model(tiny_vox):
    return load_model(*tiny_vox, device="cpu")


def untuned_nets(model, dtype=torch.float32):
    return inference_networks(model, dtype=dtype, tune=False)


def run_forms(model, nets) -> dict[int, set[str]]:
    """The forms each fused convolution runs for one source and one driving frame (id(module) -> forms)."""
    seen: dict[int, set[str]] = {}

    def record(module, args):
        if isinstance(module, FusedConv):
            seen.setdefault(id(module), set()).add(module.form(args[0]))

    hooks = [m.register_forward_pre_hook(record) for m in tune.fused_convs(nets)]
    try:
        tune.capture_layers(model, nets)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


# ------------------------------------------------------------------------------------ the forms


def test_each_form_is_the_same_convolution():
    """direct, channels_last (NCHW in and out) and contiguous (channels-last in and out) compute the same values
    and give the input's layout back; a tuned form that does not apply (Winograd, not allowed) falls back."""
    g = torch.Generator().manual_seed(0)
    conv = FusedConv(torch.randn(12, 8, 3, 3, generator=g), torch.randn(12, generator=g), padding=1)
    x = torch.randn(2, 8, 20, 20, generator=g)
    want = F.conv2d(x, conv.weight, conv.bias, padding=1)
    with torch.inference_mode():
        conv.forms = {input_signature(x): "channels_last"}
        assert conv.form(x) == "channels_last"
        out = conv(x)
        assert out.is_contiguous() and torch.allclose(out, want, atol=1e-5)
        last = x.contiguous(memory_format=torch.channels_last)
        conv.forms = {input_signature(last): "contiguous"}
        out = conv(last)
        assert out.is_contiguous(memory_format=torch.channels_last) and torch.allclose(out, want, atol=1e-5)
        conv.forms = {input_signature(x): "winograd"}  # enable_winograd was not called: no plan
        assert conv.form(x) == "direct" and torch.equal(conv(x), want)
        assert conv.form(x[:1]) == "direct"  # an input the choices do not name: the untuned rule
        for given in (x, last):  # oneDNN with its weights packed once per input signature, in the input's layout
            conv.forms = {input_signature(given): "packed"}
            out = conv(given)
            assert conv.form(given) == "packed" and torch.allclose(out, want, atol=1e-5)
            assert out.is_contiguous(memory_format=torch.channels_last) == (given is last)
        assert len(conv.packed_weights) == 2
        assert copy.deepcopy(conv).packed_weights == {} and pickle.loads(pickle.dumps(conv)).packed_weights == {}


def test_packed_weights_are_a_candidate_on_small_maps_only():
    """The tuner offers ``packed`` on inputs of at most PACKED_MAX_PIXELS pixels in the weights' precision (under
    autocast too, with the weights in autocast's precision); the untuned rule never packs (memory)."""
    g = torch.Generator().manual_seed(0)
    conv = FusedConv(torch.randn(16, 8, 3, 3, generator=g), torch.randn(16, generator=g), padding=1)
    small, large = torch.randn(1, 8, 16, 16, generator=g), torch.randn(1, 8, 17, 16, generator=g)
    assert "packed" in tune.candidate_forms(conv, small) and "packed" not in tune.candidate_forms(conv, large)
    assert conv.default_form(small) == "direct"
    assert not conv.packed_applies(small.bfloat16())  # another precision than the weights'
    reduced = FusedConv(conv.weight.bfloat16(), conv.bias.bfloat16(), padding=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert reduced.packed_applies(small)
        assert not conv.packed_applies(small)  # float32 weights under autocast: oneDNN casts them per call
        reduced.forms = {input_signature(small): "packed"}  # the signature names autocast's precision
        assert reduced.form(small) == "packed"
        out = reduced(small)
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), F.conv2d(small, conv.weight, conv.bias, padding=1), atol=0.1, rtol=0.02)


# ------------------------------------------------------------------------------------ choosing


def test_the_tuner_keeps_the_faster_form(model):
    """With Winograd reported fastest, every layer where it applies runs Winograd (and the others their untuned
    form); with the other layout fastest, every layer runs it: the choices follow the measured times."""
    nets = untuned_nets(model)
    timer = FakeTimer({"winograd": 1.0, "direct": 5.0, "channels_last": 6.0, "contiguous": 6.0, "packed": 5.0,
                       "taps": 5.0})
    tuning = tune.tune_networks(model, nets, torch.float32, timer=timer)
    assert len(tuning.choices) > 10 and timer.layers() == {c.layer.label for c in tuning.choices}
    for choice in tuning.choices:
        expected = "winograd" if "winograd" in choice.layer.candidates else choice.layer.default
        assert choice.choice == expected and choice.measured
    assert any(c.choice != c.layer.default for c in tuning.choices)  # the untuned rule left some out
    by_module = {id(m): c.choice for c in tuning.choices for m in c.layer.modules}
    for module_id, forms in run_forms(model, nets).items():
        assert forms == {by_module[module_id]}  # the networks really run the choices

    timer = FakeTimer({"winograd": 6.0, "direct": 5.0, "channels_last": 1.0, "contiguous": 1.0, "packed": 5.0,
                       "taps": 5.0})
    tuning = tune.tune_networks(model, nets, torch.float32, timer=timer)
    for choice in tuning.choices:  # NCHW inputs go channels-last, the channels-last input of the final layer NCHW
        assert choice.choice == ("contiguous" if "contiguous" in choice.layer.candidates else "channels_last")
    assert set().union(*run_forms(model, nets).values()) == {"channels_last", "contiguous"}


def test_a_form_barely_faster_than_the_untuned_one_is_not_taken():
    """Within MARGIN of the untuned form, the untuned form stays (timing noise never makes a layer slower)."""
    assert tune.choose({"direct": 1.0, "winograd": 0.99}, "direct") == "direct"
    assert tune.choose({"direct": 1.0, "winograd": 0.9}, "direct") == "winograd"
    assert tune.choose({"direct": 0.99, "winograd": 1.0}, "winograd") == "winograd"
    assert tune.choose({"direct": 2.0, "winograd": 3.0, "channels_last": 1.0}, "winograd") == "channels_last"


def test_time_call_keeps_the_best_sample():
    """The timer's best sample: a disturbed sample (another process) does not count."""
    now = [0.0]
    durations = iter([9.0, 2.0, 1.5, 5.0, 1.0])  # warm-up, once, then three samples (one disturbed)

    def run():
        now[0] += next(durations)

    assert tune.time_call(run, clock=lambda: now[0], repeats=3, min_sample=0.5) == 1.0


# ------------------------------------------------------------------------------------ the cache


def test_the_cache_round_trips(model, tiny_vox):
    """The file holds the machine key and every layer's times and choice; a model loaded afterwards runs the same
    choices from it without measuring (inference_networks and the Animator), and tune=False runs the rule."""
    nets = untuned_nets(model)
    tuning = tune.tune_networks(model, nets, torch.float32, timer=FakeTimer({"channels_last": 1.0, "contiguous": 1.0}))
    data = json.loads(tuning.path.read_text())
    assert data["machine"] == tune.machine_key(torch.float32) and data["machine"]["threads"] == 1
    assert data["machine"]["cpu"] == cpu_info().model and set(data["machine"]["flags"]) <= set(CPU_FLAGS)
    assert len(data["layers"]) == len(tuning.choices) and data["reference_gflops"] == pytest.approx(100.0)
    assert tuning.path.parent.parent == cache_dir() and tuning.path.name == "cpu-float32-1threads.json"

    fresh = load_model(*tiny_vox, device="cpu")
    Animator(fresh, dtype="float32", smoothing=0)  # applies the cache, measures nothing
    nets = inference_networks(fresh)
    assert set().union(*run_forms(fresh, nets).values()) == {"channels_last", "contiguous"}  # the other layout
    Animator(fresh, dtype="float32", smoothing=0, tune=False)
    assert all(m.forms is None for m in tune.fused_convs(nets))
    assert set().union(*run_forms(fresh, nets).values()) == {"direct", "winograd", "taps"}


CORRUPTIONS = {
    "not JSON": lambda text: text[: len(text) // 2],
    "binary": lambda text: "\x00\xff garbage",
    "another format": lambda text: json.dumps({**json.loads(text), "format": 99}),
    "unknown form": lambda text: text.replace('"choice": "channels_last"', '"choice": "fft"', 1),
    "negative time": lambda text: json.dumps({**json.loads(text), "layers": [
        {**e, "ms": {k: -1.0 for k in e["ms"]}} for e in json.loads(text)["layers"]]}),
    "stale: another torch": lambda text: json.dumps({**json.loads(text), "machine": {
        **json.loads(text)["machine"], "torch": "1.0.0"}}),
    "stale: another CPU": lambda text: json.dumps({**json.loads(text), "machine": {
        **json.loads(text)["machine"], "cpu": "Some Other CPU"}}),
}


@pytest.mark.parametrize("damage", list(CORRUPTIONS))
def test_a_corrupt_or_stale_cache_is_measured_again(model, damage, caplog):
    """A damaged file or one measured elsewhere is never applied (a warning names it); tuning measures every
    layer again and rewrites it whole and valid, with no temporary file left behind."""
    nets = untuned_nets(model)
    tuning = tune.tune_networks(model, nets, torch.float32, timer=FakeTimer({"channels_last": 1.0, "contiguous": 1.0}))
    path = tuning.path
    path.write_text(CORRUPTIONS[damage](path.read_text()), encoding="utf-8", errors="surrogateescape")
    found, status = tune.read_cache(path, tune.machine_key(torch.float32))
    assert found is None and status.startswith("stale" if damage.startswith("stale") else "corrupt"), status

    tune.clear_choices(nets)
    with caplog.at_level("WARNING"):
        assert tune.use_tuning(model, nets, torch.float32) is None
    assert str(path) in caplog.text and "not used" in caplog.text
    assert all(m.forms is None for m in tune.fused_convs(nets))

    timer = FakeTimer({"winograd": 1.0})
    again = tune.tune_networks(model, nets, torch.float32, timer=timer, remeasure=False)
    assert timer.layers() == {c.layer.label for c in again.choices} and all(c.measured for c in again.choices)
    found, status = tune.read_cache(path, tune.machine_key(torch.float32))
    assert status == "ok" and len(found.entries) == len(again.choices)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_first_use_measures_only_what_the_cache_lacks(model):
    nets = untuned_nets(model)
    tuning = tune.tune_networks(model, nets, torch.float32, timer=FakeTimer({"direct": 1.0}))
    data = json.loads(tuning.path.read_text())
    dropped = data["layers"].pop()
    tuning.path.write_text(json.dumps(data))
    timer = FakeTimer({"direct": 1.0})
    again = tune.tune_networks(model, nets, torch.float32, timer=timer, remeasure=False)
    assert timer.layers() == {tune.layer_label(dropped["conv"], dropped["input"])}
    assert sum(c.measured for c in again.choices) == 1
    assert len(json.loads(tuning.path.read_text())["layers"]) == len(data["layers"]) + 1


# ------------------------------------------------------------------------------------ exactness


def _frames(model, gold, **options) -> np.ndarray:
    animator = Animator(model, smoothing=0, float_output=True, **options)
    return np.stack(list(animator.animate(gold["source"], gold["driving"])))


@pytest.mark.parametrize("fastest", ["winograd", "channels_last"])
def test_tuned_frames_equal_the_untuned_ones(model, golden_dir, fastest):
    """Every layer switched to another exact form (Winograd wherever it applies, or the other memory layout):
    the frames stay within the rewrites' bound of the untuned ones and the golden bound of the official ones."""
    gold = dict(np.load(golden_dir / "tiny-vox-golden.npz"))
    untuned = _frames(model, gold, dtype="float32", tune=False)
    tune.tune_networks(model, untuned_nets(model), torch.float32, timer=FakeTimer({fastest: 1.0}))
    tuned = _frames(model, gold, dtype="float32")  # the cache just written
    assert any(m.forms for m in tune.fused_convs(inference_networks(model)))
    assert float(np.abs(tuned - untuned).max()) <= EXACT
    assert float(np.abs(tuned - gold["prediction_rel1_adapt1"]).max()) <= GOLDEN


@pytest.mark.parametrize("fastest", [("contiguous", "channels_last"), ("winograd_f2",)])
def test_tuned_bfloat16_stays_close(model, golden_dir, fastest):
    """bfloat16 with every layer in the other layout, or by F(2x2, 3x3) wherever it applies: within 40 dB of
    float32, as the untuned bfloat16 is."""
    gold = dict(np.load(golden_dir / "tiny-vox-golden.npz"))
    exact = _frames(model, gold, dtype="float32", tune=False).astype(np.float64)
    tuning = tune.tune_networks(model, untuned_nets(model, torch.bfloat16), torch.bfloat16,
                                timer=FakeTimer(dict.fromkeys(fastest, 1.0)))
    assert tuning.path.name == "cpu-bfloat16-1threads.json"
    assert any(c.choice in fastest for c in tuning.choices)
    fast = _frames(model, gold, dtype="bfloat16")
    assert 10 * np.log10(1 / max(((exact - fast) ** 2).mean(), 1e-12)) >= 40


# ------------------------------------------------------------------------------------ dtype auto, compile


def test_auto_chooses_bfloat16_only_where_its_measured_rate_beats_float32(model, monkeypatch):
    monkeypatch.setattr(device_module, "cpu_has_native_bfloat16", lambda: True)
    cpu = torch.device("cpu")
    assert auto_dtype(cpu) == torch.bfloat16  # flags alone
    assert auto_dtype(cpu, {torch.float32: 100.0, torch.bfloat16: 90.0}) == torch.float32
    assert auto_dtype(cpu, {torch.float32: 100.0, torch.bfloat16: 200.0}) == torch.bfloat16
    assert auto_dtype(cpu, {torch.float32: 100.0}) == torch.bfloat16  # one precision measured: the flags
    monkeypatch.setattr(device_module, "cpu_has_native_bfloat16", lambda: False)
    assert auto_dtype(cpu, {torch.float32: 100.0, torch.bfloat16: 200.0}) == torch.float32

    monkeypatch.setattr(device_module, "cpu_has_native_bfloat16", lambda: True)
    rates = {"float32": 120.0, "bfloat16": 80.0}  # a CPU with the instructions and no gain from them
    for dtype in (torch.float32, torch.bfloat16):
        tune.tune_networks(model, untuned_nets(model, dtype), dtype, timer=FakeTimer({}, rates=rates))
    assert tune.measured_rates() == {torch.float32: pytest.approx(120.0), torch.bfloat16: pytest.approx(80.0)}
    assert Animator(model, smoothing=0).dtype == torch.float32
    rates["bfloat16"] = 240.0
    tune.tune_networks(model, untuned_nets(model, torch.bfloat16), torch.bfloat16, timer=FakeTimer({}, rates=rates))
    assert Animator(model, smoothing=0).dtype == torch.bfloat16


def test_compile_says_when_float32_on_the_cpu_gains_nothing(model, recwarn):
    with pytest.warns(UserWarning, match="no faster than eager"):
        Animator(model, dtype="float32", smoothing=0, compile=True)
    Animator(model, dtype="bfloat16", smoothing=0, compile=True)
    assert not [w for w in recwarn if "no faster" in str(w.message)]


# ------------------------------------------------------------------------------------ the command


def test_cli_tune_prints_its_table(tiny_vox, capsys):
    threads = torch.get_num_threads()
    try:
        assert main(["tune", "--config", str(tiny_vox[0]), "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert cpu_info().model in out and "untuned -> chosen" in out and "3x3 3->8 @ 1x64x64" in out
    assert "float32: timing" in out and "GFLOP/s in float32" in out and "--dtype auto chooses" in out
    path = cache_dir() / "tuning" / "cpu-float32-1threads.json"
    assert f"wrote {path}" in out
    assert tune.read_cache(path, {**tune.machine_key(torch.float32), "threads": 1})[1] == "ok"


def test_cli_tune_bad_arguments(capsys):
    assert main(["tune", "--threads", "0"]) == 2
    assert "must be 1 or more" in capsys.readouterr().err
    assert main(["tune", "--config", "no-such-model"]) == 1
    assert "no-such-model" in capsys.readouterr().err
