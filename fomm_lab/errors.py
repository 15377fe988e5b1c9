"""Exceptions with messages meant for the user: which file, what is wrong, what to do."""

from __future__ import annotations


class FommLabError(Exception):
    """Base class of every error fomm_lab raises on purpose.

    The message is complete and user-facing; the CLI prints it as one line without a traceback.
    """


class ConfigError(FommLabError):
    """A model config is unknown, unreadable or inconsistent."""


class CheckpointError(FommLabError):
    """A checkpoint file is missing, is not a checkpoint, or does not fit the config."""


class DownloadError(FommLabError):
    """A checkpoint could not be downloaded or verified from any mirror."""


class MediaError(FommLabError):
    """An image or video cannot be read or written."""


class NoFaceError(MediaError):
    """No face was found where one was needed."""
