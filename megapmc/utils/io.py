"""The one owner of "write a file so that a reader sees the old version or the new one, never half".

Every writer goes to a temporary file beside its destination (same directory, so the rename is atomic on
POSIX), then ``os.replace``. A crash leaves the destination untouched and at worst a ``*.tmp-<pid>`` file.

fsync policy, stated once:
- ``durable=True`` (checkpoints, their tracker, anything a resume trusts): the file's data and then its
  directory entry are flushed to disk, so a power loss after return cannot bring back the old file or an
  empty one.
- ``durable=False`` (default: reports, caches, derived data that a rerun rebuilds): atomic against a
  killed process, not against a power loss; skips the fsync cost on slow network file systems.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import IO, Any, Iterator, Union

PathLike = Union[str, os.PathLike]


def temp_path(path: PathLike) -> str:
    """The temporary name used beside ``path`` (unique per process, so two ranks never share one)."""
    return f"{os.fspath(path)}.tmp-{os.getpid()}"


def fsync_dir(path: PathLike) -> None:
    """Flush a directory's entries (a rename inside it) to disk."""
    fd = os.open(os.fspath(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: PathLike) -> None:
    """Flush an already written file's data to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def replace(tmp: PathLike, path: PathLike, durable: bool = False) -> None:
    """Move a finished temporary file onto ``path`` (fsyncing both first when ``durable``)."""
    if durable:
        fsync_file(tmp)
    os.replace(tmp, path)
    if durable:
        fsync_dir(Path(path).parent)


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", durable: bool = False, **kwargs: Any) -> Iterator[IO]:
    """``open()`` for writing whose result appears at ``path`` only if the block finishes without error.

    On an exception the temporary file is removed and ``path`` keeps whatever it held before.
    """
    if not any(m in mode for m in "wx"):
        raise ValueError(f"atomic_open writes a new file; mode {mode!r} is not a write mode")
    tmp = temp_path(path)
    try:
        with open(tmp, mode.replace("x", "w"), **kwargs) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(Path(path).parent)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes_atomic(path: PathLike, data: bytes, durable: bool = False) -> None:
    with atomic_open(path, "wb", durable=durable) as f:
        f.write(data)


def write_text_atomic(path: PathLike, text: str, durable: bool = False) -> None:
    with atomic_open(path, "w", durable=durable, encoding="utf-8") as f:
        f.write(text)


def write_json_atomic(path: PathLike, obj: Any, durable: bool = False, indent: int | None = 2,
                      **dumps_kwargs: Any) -> None:
    """``obj`` as JSON (UTF-8, non-ASCII kept, trailing newline)."""
    dumps_kwargs.setdefault("ensure_ascii", False)
    write_text_atomic(path, json.dumps(obj, indent=indent, **dumps_kwargs) + "\n", durable=durable)
