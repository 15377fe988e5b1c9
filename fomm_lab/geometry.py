"""Sizes and boxes in pixels, shared by every stage.

Images are ``(height, width, 3)`` arrays; a :class:`Size` is always named ``width``/``height`` (it
unpacks as ``(width, height)``, the order OpenCV takes). A :class:`Box` is ``x0, y0`` (top left) to
``x1, y1`` (bottom right, exclusive).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Size(NamedTuple):
    """A frame size in pixels."""

    width: int
    height: int

    @classmethod
    def square(cls, side: int) -> Size:
        return cls(int(side), int(side))

    @classmethod
    def of(cls, image) -> Size:
        """The size of an ``(H, W, ...)`` array."""
        return cls(int(image.shape[1]), int(image.shape[0]))

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel coordinates, with a detector ``score``."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    def as_tuple(self) -> tuple[float, float, float, float]:
        return self.x0, self.y0, self.x1, self.y1

    def as_ints(self) -> tuple[int, int, int, int]:
        """Corners rounded to whole pixels."""
        return tuple(int(round(v)) for v in self.as_tuple())  # type: ignore[return-value]

    def iou(self, other: Box) -> float:
        """Intersection over union, in [0, 1]."""
        inter = Box(max(self.x0, other.x0), max(self.y0, other.y0), min(self.x1, other.x1), min(self.y1, other.y1))
        if inter.width <= 0 or inter.height <= 0:
            return 0.0
        return inter.area / (self.area + other.area - inter.area)

    def intersects(self, other: Box) -> bool:
        return min(self.x1, other.x1) > max(self.x0, other.x0) and min(self.y1, other.y1) > max(self.y0, other.y0)

    def union(self, other: Box) -> Box:
        """The smallest box holding both."""
        return Box(min(self.x0, other.x0), min(self.y0, other.y0), max(self.x1, other.x1), max(self.y1, other.y1),
                   max(self.score, other.score))

    def scaled(self, factor: float) -> Box:
        """The box scaled by ``factor`` around its centre."""
        cx, cy = self.center
        hw, hh = self.width * factor / 2, self.height * factor / 2
        return Box(cx - hw, cy - hh, cx + hw, cy + hh, self.score)

    def pad(self, left: float, top: float, right: float, bottom: float) -> Box:
        """Grow each side by a fraction of the box width (left/right) or height (top/bottom)."""
        w, h = self.width, self.height
        return Box(self.x0 - left * w, self.y0 - top * h, self.x1 + right * w, self.y1 + bottom * h, self.score)

    def square_in(self, width: int, height: int, increase: float = 0.0) -> Box:
        """A square with integer corners around this box's centre, inside a ``width`` x ``height`` frame.

        The side is the longer box side grown by ``increase`` on each side (``increase=0.1`` adds 10 %
        left and right, i.e. 1.2x). If the square would leave the frame it is shifted back in; if it is
        larger than the frame it shrinks to the frame's shorter side.
        """
        side = max(self.width, self.height) * (1 + 2 * increase)
        side = int(round(min(side, width, height)))
        cx, cy = self.center
        x0 = int(round(min(max(cx - side / 2, 0), width - side)))
        y0 = int(round(min(max(cy - side / 2, 0), height - side)))
        return Box(x0, y0, x0 + side, y0 + side, self.score)

    def square_at(self, cx: float, cy: float, side: float, width: int, height: int) -> Box:
        """A square of ``side`` centred at (cx, cy), shifted into and clipped to the frame (integer corners)."""
        return Box(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2, self.score).square_in(width, height)
