"""read_image on real files of every common kind, and resize / paste-back helpers."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from clips import face_patch
from PIL import Image

from fomm_lab.errors import MediaError
from fomm_lab.io import read_image, resize_image, resize_to_model


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".bmp", ".tiff"])
def test_common_formats(tmp_path: Path, suffix: str) -> None:
    img = face_patch(64)
    path = tmp_path / f"face{suffix}"
    Image.fromarray(img).save(path, **({"quality": 95} if suffix in (".jpg", ".webp") else {}))
    out = read_image(path)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).mean() < 4


def test_grayscale_becomes_rgb(tmp_path: Path) -> None:
    gray = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (5, 1))
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (5, 25, 3)
    assert np.array_equal(out[..., 0], gray) and np.array_equal(out[..., 2], gray)


def test_sixteen_bit_gray_png_is_scaled(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 100, 65535]], np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), values)
    out = read_image(tmp_path / "g16.png")
    assert out[0, :, 0].tolist() == [0, 100, 255]


def test_sixteen_bit_rgb_png(tmp_path: Path) -> None:
    rgb = np.zeros((2, 2, 3), np.uint16)
    rgb[..., 0] = 65535          # red, full scale
    rgb[..., 2] = 257 * 64       # a little blue
    cv2.imwrite(str(tmp_path / "c16.png"), rgb[..., ::-1])  # OpenCV writes BGR
    out = read_image(tmp_path / "c16.png")
    assert out[0, 0].tolist() == pytest.approx([255, 0, 64], abs=1)


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :2, 3] = 255   # left: opaque red; right: fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[0, 3].tolist() == [255, 255, 255]


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 255] + [0, 255, 0] * 255)
    img.putpixel((0, 0), 1)
    img.info["transparency"] = 0
    img.save(tmp_path / "p.png", transparency=0)
    out = read_image(tmp_path / "p.png")
    assert out[0, 0].tolist() == [0, 255, 0]
    assert out[3, 3].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = (255, 0, 0)   # left half red
    img[:, 20:] = (0, 0, 255)   # right half blue
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = 6            # "rotate 90 degrees clockwise to display"
    pil.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    out = read_image(tmp_path / "phone.jpg")
    assert out.shape == (40, 20, 3)
    assert out[5, 10, 0] > 200 and out[5, 10, 2] < 60     # red on top
    assert out[35, 10, 2] > 200 and out[35, 10, 0] < 60   # blue below


def test_huge_jpeg_is_downscaled(tmp_path: Path) -> None:
    big = np.zeros((6000, 8000, 3), np.uint8)
    big[:, 4000:] = 255
    cv2.imwrite(str(tmp_path / "big.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 80])
    del big
    out = read_image(tmp_path / "big.jpg", max_size=2048)
    assert out.shape == (1536, 2048, 3)
    assert out[:, :1000].max() < 30 and out[:, 1100:].min() > 220


def test_max_size_none_keeps_full_resolution(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "w.png"), np.zeros((10, 5000, 3), np.uint8))
    assert read_image(tmp_path / "w.png", max_size=None).shape == (10, 5000, 3)
    assert read_image(tmp_path / "w.png").shape == (8, 4096, 3)


def _png_claiming_size(path: Path, width: int, height: int) -> None:
    """A tiny valid-looking PNG whose header claims ``width`` x ``height`` pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    _png_claiming_size(tmp_path / "bomb.png", 40000, 40000)
    with pytest.raises(MediaError, match=r"bomb\.png.*too large"):
        read_image(tmp_path / "bomb.png")


@pytest.mark.parametrize(("name", "content", "message"), [
    ("empty.png", b"", "0 bytes"),
    ("notes.jpg", b"just some text, not a picture\n" * 5, "not an image"),
])
def test_bad_image_files(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(MediaError, match=message):
        read_image(tmp_path / name)


def test_truncated_image(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "full.jpg"), (np.random.default_rng(0).random((200, 200, 3)) * 255).astype(np.uint8))
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(MediaError, match=r"cut\.jpg.*truncated"):
        read_image(tmp_path / "cut.jpg")


def test_missing_image(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="does not exist"):
        read_image(tmp_path / "nope.png")


# --- resize ---------------------------------------------------------------------------------------

def test_resize_image_antialiases_when_shrinking() -> None:
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::2] = 255  # 1-px stripes: aliasing would give black or white, not grey
    small = resize_image(stripes, (16, 16))
    assert small.shape == (16, 16, 3)
    assert np.abs(small.astype(int) - 128).max() <= 2


def test_resize_to_model_crop_keeps_centre() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 50:150] = 255   # the centre square is white, the sides black
    out = resize_to_model(img, (64, 64), mode="crop")
    assert out.shape == (64, 64, 3) and out.min() == 255


def test_resize_to_model_pad_keeps_everything() -> None:
    img = np.full((100, 200, 3), 255, np.uint8)
    out = resize_to_model(img, (64, 64), mode="pad")
    assert out.shape == (64, 64, 3)
    assert out[:16].max() == 0 and out[48:].max() == 0   # black bars top and bottom
    assert out[17:47].min() == 255


def test_resize_to_model_non_square_and_bad_mode() -> None:
    out = resize_to_model(np.zeros((480, 640, 3), np.uint8), (128, 256))
    assert out.shape == (256, 128, 3)
    with pytest.raises(ValueError, match="crop' or 'pad"):
        resize_to_model(out, (64, 64), mode="stretch")
