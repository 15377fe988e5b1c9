"""Make the figure of the front page (docs/pipeline.png): photo -> face crop -> driving frames -> result.

    .venv/bin/python docs/make_figures.py            # writes docs/pipeline.png

Everything comes from the package's own functions: the face crop (crop_photo), the model (load_model)
and the animation (Animator). The model is the tiny checkpoint of the golden tests
(tests/fixtures/fomm-golden/tiny-vox*), whose weights are random: the figure shows the stages and the
frame sizes, not what a trained model makes of the photo. The driving frames are the face crop itself,
shifted and turned a little, so no video is needed. No download, no network; a few seconds on a CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage.data import astronaut
from skimage.transform import AffineTransform, warp

from fomm_lab import Animator, load_model
from fomm_lab.faces import crop_photo
from fomm_lab.faces.detect import HaarDetector

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "fomm-golden"
TILE = 160  # side of each picture in the figure, in pixels
LABEL = 18  # height of the caption strip above each picture


def driving_frames(face: np.ndarray, count: int) -> list[np.ndarray]:
    """The face crop moved as a head would: a small turn and a nod, frame by frame."""
    size = face.shape[0]
    frames = []
    for i in range(count):
        t = i / max(count - 1, 1)
        turn = np.deg2rad(8 * np.sin(2 * np.pi * t))
        shift = (0.04 * size * np.sin(2 * np.pi * t), 0.03 * size * np.cos(2 * np.pi * t) - 0.03 * size)
        centre = np.array([size / 2, size / 2])
        move = (AffineTransform(translation=-centre) + AffineTransform(rotation=turn)
                + AffineTransform(translation=centre + np.array(shift)))
        frames.append((warp(face, move.inverse, mode="edge") * 255).astype(np.uint8))
    return frames


def tile(image: np.ndarray, caption: str) -> Image.Image:
    out = Image.new("RGB", (TILE, TILE + LABEL), "white")
    out.paste(Image.fromarray(image).resize((TILE, TILE), Image.Resampling.LANCZOS), (0, LABEL))
    ImageDraw.Draw(out).text((4, 3), caption, fill="black")
    return out


def row(tiles: list[Image.Image], gap: int = 6) -> Image.Image:
    out = Image.new("RGB", (len(tiles) * (TILE + gap) - gap, TILE + LABEL), "white")
    for i, t in enumerate(tiles):
        out.paste(t, (i * (TILE + gap), 0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "pipeline.png")
    parser.add_argument("--frames", type=int, default=4)
    args = parser.parse_args()

    model = load_model(FIXTURES / "tiny-vox.yaml", FIXTURES / "tiny-vox-cpk.pth.tar", device="cpu")
    size = model.frame_size.width
    photo = astronaut()                                   # 512x512 RGB, public domain (NASA)
    crop = crop_photo(photo, size, detector=HaarDetector())  # the offline detector: same result everywhere

    marked = Image.fromarray(photo)
    box = crop.box
    ImageDraw.Draw(marked).rectangle((box.x0, box.y0, box.x1, box.y1), outline=(255, 60, 60), width=6)

    driving = driving_frames(crop.image, args.frames)
    result = list(Animator(model, dtype="float32", smoothing=0).animate(crop.image, iter(driving)))

    top = row([tile(np.asarray(marked), "photo + face box"), tile(crop.image, f"face crop {size}x{size}")]
              + [tile(frame, f"driving {i}") for i, frame in enumerate(driving)])
    bottom = row([tile(np.full((8, 8, 3), 255, np.uint8), ""), tile(np.full((8, 8, 3), 255, np.uint8), "")]
                 + [tile(frame, f"result {i} (random weights)") for i, frame in enumerate(result)])
    figure = Image.new("RGB", (top.width, top.height + bottom.height + 6), "white")
    figure.paste(top, (0, 0))
    figure.paste(bottom, (0, top.height + 6))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out, optimize=True)
    print(f"{args.out}: {figure.width}x{figure.height}, {args.out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
