"""Reading a file the user gives (a spec, a prompt template, a table, a dataset): its size bounded
before it is read, UTF-8, and when it cannot be used, one line saying why. Callers put their flag
or the file's name in front of that line."""

from __future__ import annotations

from pathlib import Path

__all__ = ["UnreadableFile", "read_text", "not_utf8"]


class UnreadableFile(ValueError):
    """A user file that cannot be read as text: missing, too large, or not UTF-8."""


def not_utf8(err: UnicodeDecodeError) -> str:
    """The one wording of a file that is not UTF-8, with where it stops being so."""
    return f"not UTF-8 text ({err.reason} at byte {err.start})"


def read_text(path: Path, max_bytes: int, kind: str) -> str:
    """The text of ``path``, refused unread when larger than ``max_bytes`` (``kind`` names what
    such a file is, for the message)."""
    try:
        if (size := path.stat().st_size) > max_bytes:
            raise UnreadableFile(f"{size:,} bytes; a {kind} has at most {max_bytes:,}")
        return path.read_bytes().decode("utf-8")
    except OSError as err:
        raise UnreadableFile(f"cannot read it ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise UnreadableFile(not_utf8(err)) from None
