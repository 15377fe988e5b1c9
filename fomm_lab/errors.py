"""Every error meant for the user: which file, what is wrong, what to do.

``str(error)`` is one short first line (what is wrong, then what to do) followed by detail lines.
The "what to do" part can name options of the job (:class:`Remedy`); each shell words them its own
way (command-line flags in the CLI, parameters in the notebook, keyword arguments in Python) through
:meth:`FommLabError.render`. Programmer mistakes (a wrong type, an impossible argument) raise
``ValueError``/``TypeError`` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import options

Wording = Callable[["Remedy"], "str | None"]
"""How a shell names a remedy's option, e.g. ``--no-crop-source``; None: the shell has no words for it."""


@dataclass(frozen=True)
class Remedy:
    """One way out of an error: set ``option`` (a field of :data:`fomm_lab.options.OPTIONS`, e.g. ``"crop.source"``)
    to ``value``.

    ``text`` is the advice with ``{}`` where the option's words go, e.g. ``"use the whole photo ({})"``.
    """

    text: str
    option: str
    value: object = True

    def __post_init__(self) -> None:
        options.option(self.option)  # KeyError for a field the table does not have (a typo)


class Placeholder(str):
    """A value in advice that the user fills in, shown without quotes (e.g. ``(x0, y0, x1, y1)``)."""

    def __repr__(self) -> str:
        return str(self)


BOX = Placeholder("(x0, y0, x1, y1)")
"""The placeholder of a face box in pixels."""

def python_words(remedy: Remedy) -> str:
    """The Python wording: ``CropOptions(source=False)`` for ``crop.source`` (:func:`fomm_lab.options.python_words`)."""
    return options.python_words(remedy.option, remedy.value)


def shorten(items: Sequence[object], limit: int = 5) -> str:
    """``a, b, c`` or ``a, b, c, ... (+12 more)``: long lists in messages stay short."""
    shown = ", ".join(str(item) for item in items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


class FommLabError(Exception):
    """Base class of every error fomm_lab raises on purpose.

    message:  what is wrong and, where no :class:`Remedy` says it, what to do (one line).
    details:  further lines (lists, causes), shown after the first line.
    remedies: ways out that name job options, worded by the shell that shows the error.
    """

    def __init__(self, message: str, *, details: Sequence[str] = (), remedies: Sequence[Remedy] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = [line for line in details if line]
        self.remedies = tuple(remedies)

    def first_line(self, words: Wording = python_words) -> str:
        """The message with the remedies in ``words`` (those a shell cannot word are left out)."""
        advice = [remedy.text.format(worded) for remedy in self.remedies if (worded := words(remedy))]
        if not advice:
            return self.message
        return f"{self.message.rstrip('.')}: {' or '.join(advice)}."

    def render(self, words: Wording = python_words) -> str:
        """First line, then the details, one per line."""
        return "\n".join([self.first_line(words), *self.details])

    def __str__(self) -> str:
        return self.render()


class ConfigError(FommLabError):
    """A model config is unknown, unreadable or inconsistent."""


class CheckpointError(FommLabError):
    """A checkpoint file is missing, is not a checkpoint, holds bad values or does not fit the config."""


class DownloadError(FommLabError):
    """A file could not be downloaded or verified from any mirror."""


class MediaError(FommLabError):
    """An image or video cannot be read or written."""


class NoFaceError(MediaError):
    """No face was found where one was needed."""


class CropError(FommLabError):
    """A crop argument does not fit the image or video (box outside the frame, size not square, ...)."""


class FaceIndexError(CropError):
    """A face or track index is out of range."""


class InferenceError(FommLabError):
    """The networks produced values that cannot be used (e.g. non-finite keypoints)."""


class MediaWarning(UserWarning):
    """A file was read, but not all of it looked right (e.g. a video shorter than its header says)."""


class LabError(FommLabError):
    """The lab (JupyterLab) cannot be started as asked."""


class DatasetError(FommLabError):
    """A training or test dataset folder is missing, empty or holds a video that does not fit the config."""


class TrainingError(FommLabError):
    """A training run cannot start, continue or go on (an existing run folder, a resume that does not fit, a
    loss that became NaN)."""
