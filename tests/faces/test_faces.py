"""Face detectors on a real face photo (skimage's astronaut), and face-alignment's offline behaviour."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
import warnings

import numpy as np
import pytest
from skimage import data

from fomm_lab.errors import ConfigError, DownloadError, MediaError
from fomm_lab.faces import HaarDetector, get_detector, get_landmarker
from fomm_lab.faces import detect as faces
from fomm_lab.faces.detect import FaceAlignmentUnavailable
from fomm_lab.geometry import Box
from fomm_lab.hub.registry import Mirror, RemoteFile

# The astronaut's face (eyes, nose, mouth, chin) in the 512x512 photo, checked by eye.
FACE_REGION = Box(185, 80, 262, 155)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache, so nothing here reads or fills the user's ~/.cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def covers(box: Box, region: Box) -> bool:
    return box.x0 <= region.x0 and box.y0 <= region.y0 and box.x1 >= region.x1 and box.y1 >= region.y1


def test_box_geometry():
    a, b = Box(0, 0, 10, 10), Box(5, 0, 15, 10)
    assert a.iou(b) == pytest.approx(50 / 150)
    assert a.iou(Box(20, 20, 30, 30)) == 0
    assert a.union(b).as_tuple() == (0, 0, 15, 10)
    assert Box(10, 10, 20, 30).pad(0.5, 0.1, 0, 0).as_tuple() == (5, 8, 20, 30)
    # square around the centre, grown 10 % on each side
    sq = Box(40, 40, 60, 80).square_in(200, 200, increase=0.1)
    assert (sq.width, sq.height, sq.center) == (48, 48, (50, 60))
    # shifted into the frame, then shrunk to the frame's shorter side
    assert Box(0, 0, 20, 20).square_in(100, 100, increase=0.5).as_tuple() == (0, 0, 40, 40)
    assert Box(10, 10, 90, 50).square_in(100, 40).as_tuple() == (30, 0, 70, 40)


def test_haar_finds_the_astronaut_face():
    boxes = HaarDetector().detect(data.astronaut())
    assert len(boxes) == 1
    (face,) = boxes
    assert covers(face, FACE_REGION)
    assert face.width < 130 and face.height < 130  # the face, not the whole upper body
    assert all(isinstance(v, float) for v in face.as_tuple())


def test_haar_finds_faces_in_large_images_in_original_pixels():
    big = np.repeat(np.repeat(data.astronaut(), 3, axis=0), 3, axis=1)  # 1536x1536, detected at 640
    (face,) = HaarDetector().detect(big)
    assert covers(face, Box(*(3 * v for v in FACE_REGION.as_tuple())))


def test_haar_profile_option_and_no_face():
    assert HaarDetector(profile=True).detect(data.astronaut())
    assert HaarDetector().detect(data.coffee()) == []  # a cup of coffee, no face
    assert HaarDetector().detect(np.zeros((240, 320, 3), np.uint8)) == []


def test_detect_rejects_non_rgb_uint8():
    with pytest.raises(MediaError, match="RGB uint8"):
        HaarDetector().detect(data.camera())  # grayscale
    with pytest.raises(MediaError, match="RGB uint8"):
        HaarDetector().detect(data.astronaut().astype(np.float32))


def test_auto_falls_back_to_haar_without_weights(torch_home):
    start = time.monotonic()
    with pytest.warns(FaceAlignmentUnavailable, match="not in .*checkpoints"):
        detector = get_detector("auto")
    assert time.monotonic() - start < 20  # no download attempt, no hang
    assert isinstance(detector, HaarDetector)
    assert not torch_home.exists() or not any(torch_home.iterdir())


def test_face_alignment_without_weights_is_a_clear_error(torch_home):
    with pytest.raises(DownloadError, match=r"(?s)weights are not in .*detector='haar'.*s3fd-619a316812\.pth"):
        get_detector("face_alignment")
    with pytest.raises(DownloadError, match="face-alignment's weights"):
        get_landmarker()
    with pytest.raises(ConfigError, match="unknown face detector 'dlib'.*haar"):
        get_detector("dlib")


def _serve(folder, handler_class=http.server.SimpleHTTPRequestHandler):
    class Quiet(handler_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_download_is_bounded_and_publishes_nothing(torch_home, tmp_path, monkeypatch):
    class Stall(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            self.wfile.flush()
            time.sleep(5)  # then stalls: the read timeout must end the attempt

    server = _serve(tmp_path, Stall)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setattr("fomm_lab.hub.download.TIMEOUT", (1.0, 1.0))
        entry = RemoteFile("s3fd", "s3fd-0123456789.pth", None, (Mirror(f"{base}/s3fd.pth"),), sha256_prefix="0123456789")
        start = time.monotonic()
        with pytest.raises(DownloadError, match=r"(?s)could not download s3fd .*s3fd.pth: .*stopped sending"):
            faces.download_face_alignment_weights([entry], progress=False)
        assert time.monotonic() - start < 4
        # nothing under the final name; the bytes received wait in .part for the next attempt to resume
        assert sorted(p.name for p in torch_home.iterdir()) == [f"{entry.filename}.lock", f"{entry.filename}.part"]
    finally:
        server.shutdown()


def test_download_fetches_missing_weights(torch_home, tmp_path, monkeypatch):
    served = tmp_path / "www"
    served.mkdir()
    (served / "a.pth").write_bytes(b"A" * 3000)
    server = _serve(served)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        data = b"A" * 3000
        prefix = hashlib.sha256(data).hexdigest()[:10]
        good = RemoteFile("a", f"a-{prefix}.pth", None, (Mirror(f"{base}/a.pth"),), sha256_prefix=prefix)
        assert not faces.face_alignment_weights_cached([good])
        assert faces.download_face_alignment_weights([good], progress=False) == torch_home
        assert (torch_home / good.filename).read_bytes() == data
        assert faces.face_alignment_weights_cached([good])
        assert sorted(p.name for p in torch_home.iterdir() if not p.name.endswith(".lock")) == [
            good.filename, good.filename + ".sha256"]
        # bytes that do not have the sha256 the name promises are refused, and nothing is kept
        bad = RemoteFile("b", "b-ffffffffff.pth", None, (Mirror(f"{base}/a.pth"),), sha256_prefix="ffffffffff")
        with pytest.raises(DownloadError, match="should start with ffffffffff"):
            faces.download_face_alignment_weights([bad], progress=False)
        assert not (torch_home / bad.filename).exists() and not (torch_home / (bad.filename + ".part")).exists()
    finally:
        server.shutdown()


@pytest.mark.slow
def test_face_alignment_runs_from_cached_weights(torch_home):
    """With weight files in the cache (random ones: the real ones cannot be fetched here) face-alignment
    is picked by "auto", loads offline on CPU and returns boxes and 68 landmarks in our types."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    torch_home.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(s3fd().state_dict(), torch_home / "s3fd-619a316812.pth")
    torch.save(FAN(4).state_dict(), torch_home / "2DFAN4-11f355bf06.pth.tar")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FaceAlignmentUnavailable)
        detector = get_detector("auto", device="cpu")
    assert detector.name == "face_alignment"
    img = np.ascontiguousarray(data.astronaut()[60:188:2, 170:298:2])  # 64x64: random S3FD is slow on big ones
    boxes = detector.detect(img)
    assert all(isinstance(b, Box) and 0 <= b.score <= 1 for b in boxes)
    assert [b.score for b in boxes] == sorted((b.score for b in boxes), reverse=True)
    points = get_landmarker(device="cpu")(img)
    assert points is None if not boxes else (points.shape == (68, 2) and points.dtype == np.float32)
