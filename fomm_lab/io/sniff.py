"""What a file really is, from its first bytes: used wherever a download or a user's file may be
an HTML page, text or an archive instead of what its name says."""

from __future__ import annotations

from pathlib import Path

HEAD_BYTES = 512
_HTML_STARTS = (b"<!doctype", b"<html", b"<head", b"<body", b"<?xml")


def read_head(path: str | Path, size: int = HEAD_BYTES) -> bytes:
    """The first ``size`` bytes of a file."""
    with open(path, "rb") as fh:
        return fh.read(size)


def is_html(head: bytes) -> bool:
    """True for the start of an HTML (or XML) page, e.g. a quota warning served instead of a file."""
    lowered = head[:HEAD_BYTES].lstrip().lower()
    return lowered.startswith(_HTML_STARTS) or b"<html" in lowered[:256]


def is_text(head: bytes) -> bool:
    """True when every byte is printable ASCII or whitespace (a text file renamed to something else)."""
    return bool(head) and all(32 <= b < 127 or b in b"\t\r\n" for b in head)


def is_zip(head: bytes) -> bool:
    return head.startswith(b"PK\x03\x04")


def is_mp4_box(head: bytes) -> bool:
    """True for an ISO media file (mp4/mov) start: a box type at bytes 4-8."""
    return head[4:8] in (b"ftyp", b"mdat", b"moov", b"free", b"wide", b"skip")
