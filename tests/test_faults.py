"""Faults lose nothing: full disks, concurrent downloads, odd videos, poisoned weights, busy ports,
small files that would take big memory, slow or looping servers, unwritable outputs.

Each case ends with a clear error and a non-zero exit, or a correct result; never with a corrupt file
at a final name, a corrupt cache entry, a wrong duration, a black video or a traceback.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from clips import make_face_clip, photo_and_clip
from httpserver import LocalServer

from fomm_lab.errors import CheckpointError, DownloadError, InferenceError, MediaError
from fomm_lab.hub.registry import Mirror, RemoteFile
from fomm_lab.io import probe_video, read_video

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path | None = None, prefix: list[str] | None = None, timeout: float = 300,
        **env: str) -> subprocess.CompletedProcess:
    """``python -m fomm_lab ARGS`` in a fresh process (optionally behind ``prefix``, e.g. unshare)."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.run([*(prefix or []), sys.executable, "-m", "fomm_lab", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def error_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "fomm-lab: error:" in line]
    assert len(lines) == 1, result.stderr
    return lines[0]


def model_args(tiny_vox) -> list[str]:
    return ["--config", str(tiny_vox[0]), "--checkpoint", str(tiny_vox[1]), "--device", "cpu"]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    return photo_and_clip(tmp_path_factory.mktemp("fault-media"), seconds=2)


def in_tmpfs(folder: Path, size: str, read_only: bool = False) -> list[str]:
    """A command prefix that runs the command with a fresh tmpfs of ``size`` mounted on ``folder``
    (a private mount namespace: nothing is mounted for anyone else)."""
    options = f"size={size}" + (",ro" if read_only else "")
    return ["unshare", "--mount", "--map-root-user", "sh", "-c",
            f'mount -t tmpfs -o {options} none "{folder}" && exec "$0" "$@"']


# --------------------------------------------------------------------------- writes are verified


def test_a_full_disk_is_an_error_and_leaves_no_file(media, tiny_vox, tmp_path):
    """``animate`` into a 40 KB file system: a one-line error naming the cause and exit 1, and the folder
    (listed from inside the mount namespace, after the command) holds nothing."""
    small = tmp_path / "small"
    small.mkdir()
    script = textwrap.dedent(f"""
        import subprocess, sys, os
        from pathlib import Path
        r = subprocess.run([sys.executable, "-m", "fomm_lab", "animate", "--source", {str(media['photo'])!r},
                            "--driving", {str(media['driving'])!r}, "--output", {str(small / 'result.mp4')!r},
                            *{model_args(tiny_vox)!r}, "--no-crop-source", "--no-crop-driving", "-q"],
                           capture_output=True, text=True)
        print("RC", r.returncode)
        print("FILES", sorted(os.listdir({str(small)!r})))
        print("ERR", r.stderr.strip().splitlines()[0] if r.stderr.strip() else "")
    """)
    result = subprocess.run([*in_tmpfs(small, "40k"), sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert "RC 1" in result.stdout, result.stdout + result.stderr
    assert "FILES []" in result.stdout, result.stdout  # no result, no hidden temporary file
    assert "no space left on device" in result.stdout


def test_a_read_only_folder_is_named_before_any_work(media, tiny_vox, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    result = cli("animate", "--source", str(media["photo"]), "--driving", str(media["driving"]),
                 "--output", str(locked / "result.mp4"), *model_args(tiny_vox), "-q",
                 prefix=in_tmpfs(locked, "1m", read_only=True))
    assert result.returncode == 1
    line = error_line(result)
    assert f"cannot write {locked / 'result.mp4'}: folder {locked} is not writable" in line
    assert ".part" not in line and "model " not in result.stdout  # nothing was loaded


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--gif", "result.png", "give a file name ending in .gif"),
    ("--side-by-side", "compare.avi", "unsupported extension"),
    ("--side-by-side", "missing/compare.mp4", "folder missing does not exist"),
])
def test_output_problems_are_found_before_the_animation(flag, value, message, media, tiny_vox, tmp_path):
    result = cli("animate", "--source", str(media["photo"]), "--driving", str(media["driving"]),
                 "--output", "result.mp4", flag, value, *model_args(tiny_vox), "-q", cwd=tmp_path)
    assert result.returncode == 1
    assert message in error_line(result)
    assert "model " not in result.stdout and list(tmp_path.iterdir()) == []


def test_a_leftover_of_a_killed_run_is_cleaned_up(tmp_path):
    from fomm_lab.io.atomic import atomic_output

    target = tmp_path / "out.mp4"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id that no longer runs
    leftover = tmp_path / f".out.mp4.{dead.pid}.abc.part.mp4"
    leftover.write_bytes(b"half a video")
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


# ------------------------------------------------------------------------------------ downloads


def test_two_processes_downloading_one_checkpoint(tmp_path, golden_dir):
    data = (golden_dir / "tiny-vox-cpk.pth.tar").read_bytes()
    cache = tmp_path / "cache"
    script = textwrap.dedent("""
        import sys
        from fomm_lab.engine.weights import ensure_checkpoint
        from fomm_lab.hub.registry import Mirror, RemoteFile
        info = RemoteFile("tiny", "tiny-cpk.pth.tar", "vox-256", (Mirror(sys.argv[1]),))
        print(ensure_checkpoint(info, cache_dir=sys.argv[2], progress=False))
    """)
    with LocalServer() as server:
        url = server.add("/tiny.pth.tar", data, rate=400_000)  # about 2 s: the two overlap
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        procs = [subprocess.Popen([sys.executable, "-c", script, url, str(cache)], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
        results = [p.communicate(timeout=120) for p in procs]
        hits = server.hits("/tiny.pth.tar")
    assert [p.returncode for p in procs] == [0, 0], results
    assert {out.strip() for out, _ in results} == {str(cache / "tiny-cpk.pth.tar")}
    assert sum("another process is downloading tiny-cpk.pth.tar" in err for _, err in results) == 1
    assert len(hits) == 1  # one writer; the other reused the verified file
    assert (cache / "tiny-cpk.pth.tar").read_bytes() == data
    assert (cache / "tiny-cpk.pth.tar.sha256").read_text().split()[0] == hashlib.sha256(data).hexdigest()
    assert not (cache / "tiny-cpk.pth.tar.part").exists()


def test_a_trickling_server_is_given_up(tmp_path, golden_dir, monkeypatch):
    import fomm_lab.hub.download as download
    from fomm_lab.engine.weights import ensure_checkpoint

    monkeypatch.setattr(download, "RATE_WINDOW_S", 1.0)
    with LocalServer() as server:
        url = server.add("/slow.pth.tar", b"x" * 100_000, rate=20)
        info = RemoteFile("tiny", "tiny-cpk.pth.tar", "vox-256", (Mirror(url),))
        with pytest.raises(DownloadError, match=r"sends only \d+ bytes/s"):
            ensure_checkpoint(info, cache_dir=tmp_path, progress=False)
    assert not (tmp_path / "tiny-cpk.pth.tar").exists()


def test_a_redirect_loop_names_the_url(tmp_path):
    from fomm_lab.engine.weights import ensure_checkpoint

    with LocalServer() as server:
        first = server.add("/a", b"", location="/b")
        server.add("/b", b"", location="/a")
        info = RemoteFile("tiny", "tiny-cpk.pth.tar", "vox-256", (Mirror(first),))
        with pytest.raises(DownloadError, match=rf"{first}: too many redirects \(a redirect loop\) starting at {first}"):
            ensure_checkpoint(info, cache_dir=tmp_path, progress=False)


def test_progress_shows_from_the_first_byte(tmp_path, golden_dir, capsys):
    from fomm_lab.engine.weights import ensure_checkpoint

    with LocalServer() as server:
        url = server.add("/t.pth.tar", (golden_dir / "tiny-vox-cpk.pth.tar").read_bytes())
        ensure_checkpoint(RemoteFile("tiny", "tiny-cpk.pth.tar", "vox-256", (Mirror(url),)), cache_dir=tmp_path)
    err = capsys.readouterr().err
    assert "tiny-cpk.pth.tar:   0%" in err and "100%" in err


# --------------------------------------------------------------------------------- video timing


def make_vfr_clip(path: Path) -> Path:
    """A 3 s clip with irregular frame times (frames of a 30 fps clip kept at random), with sound."""
    from fomm_lab.io.ffmpeg import ffmpeg_exe

    src = make_face_clip(path.with_name("cfr.mp4"), seconds=3, fps=30, size=(160, 120), audio=True)
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(src),
                    "-vf", "select='not(mod(n\\,3))+eq(mod(n\\,7)\\,1)'", "-fps_mode", "vfr",
                    "-c:v", "libx264", "-c:a", "copy", str(path)], check=True)
    return path


def audio_seconds(path: Path) -> float:
    from fomm_lab.io.ffmpeg import run

    messages = run(["-i", str(path), "-map", "0:a:0", "-f", "null", "-"], what="audio length", quiet=False)
    stamp = messages.rsplit("time=", 1)[1].split()[0]
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


@pytest.mark.slow
def test_variable_frame_rate_keeps_its_duration(media, tiny_vox, tmp_path):
    clip = make_vfr_clip(tmp_path / "vfr.mp4")
    info = probe_video(clip)
    assert info.variable_rate, "the test clip should be variable-rate"
    frames = list(read_video(clip))
    assert abs(len(frames) / info.fps - info.duration) <= 1.5 / info.fps
    out = tmp_path / "out.mp4"
    result = cli("animate", "--source", str(media["photo"]), "--driving", str(clip), "--output", str(out),
                 *model_args(tiny_vox), "--no-crop-source", "--no-crop-driving", "-q")
    assert result.returncode == 0, result.stderr
    written = probe_video(out)
    assert abs(written.duration - info.duration) <= 1 / info.fps + 0.05
    assert abs(audio_seconds(out) - info.duration) <= 1 / info.fps + 0.05


def test_a_truncated_clip_warns_and_strict_fails(media, tiny_vox, tmp_path):
    from fomm_lab.io.ffmpeg import ffmpeg_exe

    full = tmp_path / "full.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(media["driving"]), "-c", "copy",
                    "-movflags", "+faststart", str(full)], check=True)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "frames"
    result = cli("animate", "--source", str(media["photo"]), "--driving", str(cut), "--output", str(out),
                 *model_args(tiny_vox), "--no-crop-source", "--no-crop-driving", "--no-audio", "-q")
    assert result.returncode == 0, result.stderr
    assert "fomm-lab: warning:" in result.stderr and "missing): the file looks truncated" in result.stderr
    assert 0 < len(list(out.iterdir())) < 20
    strict = cli("animate", "--source", str(media["photo"]), "--driving", str(cut), "--output",
                 str(tmp_path / "strict.mp4"), *model_args(tiny_vox), "--no-crop-source", "--no-crop-driving",
                 "--strict", "-q")
    assert strict.returncode == 1
    assert "looks truncated" in error_line(strict)
    assert not (tmp_path / "strict.mp4").exists()


# ------------------------------------------------------------------------------ poisoned weights


def poisoned(golden_dir: Path, tmp_path: Path, value: float) -> Path:
    data = torch.load(golden_dir / "tiny-vox-cpk.pth.tar", map_location="cpu", weights_only=True)
    name = next(k for k, v in data["generator"].items() if v.is_floating_point() and k.endswith("weight"))
    data["generator"][name].view(-1)[3] = value
    path = tmp_path / f"poisoned-{value}.pth.tar"
    torch.save(data, path)
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load(value, golden_dir, tmp_path):
    from fomm_lab import load_model

    with pytest.raises(CheckpointError, match=r"holds NaN or infinite weights \(generator\.\w"):
        load_model(golden_dir / "tiny-vox.yaml", poisoned(golden_dir, tmp_path, value), device="cpu")


@pytest.mark.parametrize("adapt", [True, False])
def test_non_finite_keypoints_stop_with_an_error(adapt, golden_dir, tmp_path):
    """Finite weights that overflow (a keypoint head scaled to 1e30): the animation stops with an error
    instead of writing a black video."""
    from fomm_lab import Animator, load_model

    data = torch.load(golden_dir / "tiny-vox-cpk.pth.tar", map_location="cpu", weights_only=True)
    data["kp_detector"]["kp.weight"] = torch.full_like(data["kp_detector"]["kp.weight"], 3e38)
    path = tmp_path / "overflow.pth.tar"
    torch.save(data, path)
    model = load_model(golden_dir / "tiny-vox.yaml", path, device="cpu")
    gold = np.load(golden_dir / "tiny-vox-golden.npz")
    with pytest.raises(InferenceError, match="NaN or infinite keypoints"):
        list(Animator(model, smoothing=0, adapt_scale=adapt, dtype="float32").animate(gold["source"], iter(gold["driving"])))


def test_a_code_running_zip_pickle_is_named_as_such(tmp_path):
    from fomm_lab.engine.checkpoint import read_checkpoint

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth.tar"
    torch.save({"generator": Evil(), "kp_detector": {}}, path)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    text = str(err.value)
    assert "would run code when loaded (posix.system)" in text and "nothing was executed" in text
    assert "weights_only" not in text and "truncated" not in text
    assert not marker.exists()


# ------------------------------------------------------------------------------------ the lab port


def test_lab_on_a_busy_port_prints_no_url(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("lab", "--port", str(port), "--no-browser", "--allow-root", timeout=120)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already taken by another program: pick another one (--port {port + 1})" in \
        error_line(result)
    assert "http://" not in result.stdout + result.stderr


# ---------------------------------------------------------------------------------- memory bounds


def peak_rss_mb(code: str) -> tuple[int, float, str]:
    """Run ``code`` in a fresh interpreter: (exit status, its own peak RSS in MB, stderr). The peak is the
    process's VmHWM (ru_maxrss would include the memory of the pytest process it was forked from)."""
    wrapped = ("import atexit, re\n"
               "atexit.register(lambda: print('PEAK', re.search(r'VmHWM:\\s+(\\d+)', "
               "open('/proc/self/status').read()).group(1)))\n" + code)
    proc = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    peak = int(proc.stdout.rsplit("PEAK", 1)[1].split()[0])
    return proc.returncode, peak / 1024, proc.stderr


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> Path:
    """A 12000x12000 PNG of one colour: a few hundred KB on disk, 432 MB as RGB pixels."""
    from PIL import Image

    path = tmp_path_factory.mktemp("huge") / "huge.png"
    Image.new("RGB", (12000, 12000), (40, 80, 120)).save(path, optimize=False)
    return path


def test_a_huge_image_is_refused_before_decoding(huge_png):
    assert huge_png.stat().st_size < 2_000_000
    code = ("from fomm_lab.io import read_image\nfrom fomm_lab.errors import MediaError\n"
            f"try:\n    read_image({str(huge_png)!r})\nexcept MediaError as e:\n    raise SystemExit(str(e))\n")
    status, peak, err = peak_rss_mb(code)
    assert status == 1 and "12000x12000 (144 megapixels), more than the 67 megapixels" in err
    assert peak < 300, f"{peak:.0f} MB peak"


def test_a_huge_camera_frame_is_refused_before_decoding(huge_png):
    from fomm_lab.lab._jpeg import decode_jpeg

    with pytest.raises(MediaError, match="12000x12000, more than the 8 megapixels accepted"):
        decode_jpeg(huge_png.read_bytes())


def test_a_checkpoint_that_inflates_is_refused_before_loading(tmp_path):
    """A zip checkpoint whose entries unpack far beyond its size (deflated zeros)."""
    plain = tmp_path / "plain.pth.tar"
    torch.save({"generator": {"w": torch.zeros(4)}, "kp_detector": {}}, plain)
    bomb = tmp_path / "bomb.pth.tar"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        with dst.open(f"{src.namelist()[0].split('/')[0]}/padding", "w") as pad:
            block = bytes(1 << 20)
            for _ in range(300):  # 300 MB of zeros, about 300 KB deflated
                pad.write(block)
    assert bomb.stat().st_size < 2_000_000
    code = ("import fomm_lab.engine.checkpoint as c\nfrom fomm_lab.errors import CheckpointError\n"
            "c.MAX_UNPACKED_BYTES = 200 << 20\n"
            f"try:\n    c.read_checkpoint({str(bomb)!r})\nexcept CheckpointError as e:\n    raise SystemExit(str(e))\n")
    status, peak, err = peak_rss_mb(code)
    assert status == 1 and "would unpack to 0.3 GB" in err and "was not loaded" in err
    assert peak < 600, f"{peak:.0f} MB peak"


def test_the_recorder_limits_are_the_kernels(tmp_path):
    from fomm_lab.lab import WebcamRecorder
    from fomm_lab.lab._jpeg import encode_jpeg

    rec = WebcamRecorder(tmp_path, fps=10, max_seconds=1)
    rec.max_seconds = 1000  # what a page could ask for
    assert rec.max_seconds == 1
    rec._on_message(rec, {"type": "start"}, [])
    rng = np.random.default_rng(0)
    for index in range(60):
        frame = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        rec._on_message(rec, {"type": "frame", "index": index}, [memoryview(encode_jpeg(frame))])
    rec._on_message(rec, {"type": "stop"}, [])
    assert rec.error == ""
    assert len(list(read_video(rec.path))) == 10  # 1 s at 10 fps, whatever the page sent

