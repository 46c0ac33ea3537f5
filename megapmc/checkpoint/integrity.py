"""Checksums of checkpoint files: recorded at save in ``manifest.json``, verified on load.

``manifest.json`` (written last, by rank 0, once every rank's files are complete)::

    {"format_version": 1, "iteration": 10, "run_id": "3f2a...", "algorithm": "xxh3_64",
     "files": {"model_tp00.safetensors": {"size": 123, "xxh3_64": "9ab1..."}, ...}}

The hash is xxHash's XXH3 64-bit (the ``xxhash`` package, https://github.com/Cyan4973/xxHash): tens of
GB/s per core, so verifying a rank's files costs about what reading them does. Modes (``--verify-checkpoint``):

- ``full``: every file this rank reads is listed, has its recorded size and hash, and its own header
  (safetensors ``__metadata__``, JSON ``iteration``/``run_id``) names the manifest's iteration and run.
- ``metadata``: the same without the hash (sizes and headers only: milliseconds).
- ``off``: nothing beyond what reading the files needs.

Each rank verifies only the files it reads, in a thread pool (one file per thread), so a run's ranks
check the whole checkpoint between them in parallel.
"""
from __future__ import annotations

import json
import os
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import xxhash

from megapmc.checkpoint.errors import CheckpointDamaged
from megapmc.utils.io import write_json_atomic

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
ALGORITHM = "xxh3_64"
_CHUNK = 16 << 20
# A safetensors header is a JSON object of a few KB per tensor; anything past this is garbage, not a header.
_MAX_HEADER = 100 << 20


def file_checksum(path: str | os.PathLike) -> str:
    """XXH3-64 of the file's bytes, as 16 hex digits."""
    h = xxhash.xxh3_64()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def describe_file(path: Path) -> dict:
    return {"size": path.stat().st_size, ALGORITHM: file_checksum(path)}


def write_manifest(ckpt_dir: Path, iteration: int, run_id: str, files: dict[str, dict]) -> Path:
    path = ckpt_dir / MANIFEST_NAME
    write_json_atomic(path, {"format_version": MANIFEST_VERSION, "iteration": iteration, "run_id": run_id,
                             "algorithm": ALGORITHM, "files": dict(sorted(files.items()))}, durable=True)
    return path


def read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path``, or a CheckpointError naming the file (missing, unreadable, garbled)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise CheckpointDamaged(f"{path}: missing ({what}); the checkpoint is incomplete") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointDamaged(f"{path}: unreadable ({what}): {e}; the file is damaged") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        state = "truncated" if e.pos >= len(text.rstrip()) else "garbled"
        raise CheckpointDamaged(f"{path}: {state} JSON ({what}) at line {e.lineno} column {e.colno}; "
                                f"the file is damaged") from None
    if not isinstance(obj, dict):
        raise CheckpointDamaged(f"{path}: expected a JSON object ({what}), found {type(obj).__name__}; "
                                f"the file is damaged")
    return obj


def read_manifest(ckpt_dir: Path) -> dict:
    manifest = read_json(ckpt_dir / MANIFEST_NAME, "the checksums of the checkpoint's files")
    files = manifest.get("files")
    if (manifest.get("format_version") != MANIFEST_VERSION or manifest.get("algorithm") != ALGORITHM
            or not isinstance(files, dict) or not isinstance(manifest.get("iteration"), int)):
        raise CheckpointDamaged(f"{ckpt_dir / MANIFEST_NAME}: not a version-{MANIFEST_VERSION} {ALGORITHM} manifest "
                                f"with an iteration and a file list; the file is damaged")
    return manifest


def safetensors_metadata(path: Path) -> dict:
    """The ``__metadata__`` of a safetensors file, after checking that its header is well formed and that
    the tensors it describes fit in the file (format: https://github.com/huggingface/safetensors#format:
    an 8-byte little-endian header length N, N bytes of JSON, then the tensor bytes)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointDamaged(f"{path}: truncated safetensors file ({size} bytes, no header); the file is "
                                    f"damaged")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, _MAX_HEADER):
            raise CheckpointDamaged(f"{path}: garbled or truncated safetensors header (claims {n} bytes, the file "
                                    f"has {size}); the file is damaged")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError, IndexError):
        raise CheckpointDamaged(f"{path}: garbled safetensors header; the file is damaged") from None
    if 8 + n + max(ends, default=0) > size:
        raise CheckpointDamaged(f"{path}: truncated safetensors file ({size} bytes, its header describes "
                                f"{8 + n + max(ends)}); the file is damaged")
    return header.get("__metadata__") or {}


@dataclass
class VerifyReport:
    files: int
    bytes: int
    seconds: float


def _check_one(ckpt_dir: Path, name: str, entry: dict, manifest: dict, mode: str) -> None:
    path = ckpt_dir / name
    if not path.is_file():
        raise CheckpointDamaged(f"{path}: missing (listed in {MANIFEST_NAME}); the checkpoint is incomplete")
    size = path.stat().st_size
    if size != entry.get("size"):
        raise CheckpointDamaged(f"{path}: size mismatch: expected {entry.get('size')} bytes, found {size} "
                                f"(truncated or replaced)")
    want = {"iteration": manifest["iteration"], "run_id": manifest.get("run_id")}
    if name.endswith(".safetensors"):
        meta = safetensors_metadata(path)
        got = {"iteration": int(meta["iteration"]) if meta.get("iteration", "").isdigit() else meta.get("iteration"),
               "run_id": meta.get("run_id")}
    elif name != "config.json":
        state = read_json(path, "training state")
        got = {"iteration": state.get("iteration"), "run_id": state.get("run_id")}
    else:
        got = want
    for key in want:
        if got[key] != want[key]:
            raise CheckpointDamaged(f"{path}: from another {'iteration' if key == 'iteration' else 'run'}: its "
                                    f"{key} is {got[key]!r}, the checkpoint's is {want[key]!r} (a file copied in)")
    if mode == "full":
        found = file_checksum(path)
        if found != entry.get(ALGORITHM):
            raise CheckpointDamaged(f"{path}: checksum mismatch: expected {ALGORITHM} {entry.get(ALGORITHM)}, "
                                    f"found {found} (the file was changed or damaged after it was saved)")


def verify_files(ckpt_dir: Path, names: list[str], mode: str, manifest: dict | None = None) -> VerifyReport:
    """Check ``names`` (files of ``ckpt_dir`` this rank reads) against the manifest; raise CheckpointError
    for the first damaged one (in ``names`` order)."""
    start = time.perf_counter()
    if mode == "off":
        return VerifyReport(0, 0, 0.0)
    manifest = read_manifest(ckpt_dir) if manifest is None else manifest
    dir_iter = ckpt_dir.name[5:]
    if ckpt_dir.name.startswith("iter_") and dir_iter.isdigit() and int(dir_iter) != manifest["iteration"]:
        raise CheckpointDamaged(f"{ckpt_dir / MANIFEST_NAME}: records iteration {manifest['iteration']}, the "
                                f"directory is named for {int(dir_iter)}; the directory was renamed or mixed up")
    unlisted = [n for n in names if n not in manifest["files"]]
    if unlisted:
        raise CheckpointDamaged(f"{ckpt_dir / unlisted[0]}: not listed in {MANIFEST_NAME}; the checkpoint was "
                                f"saved with another layout or its manifest is damaged")
    entries = [(n, manifest["files"][n]) for n in names]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(entries)))) as pool:
        futures = [pool.submit(_check_one, ckpt_dir, n, e, manifest, mode) for n, e in entries]
        for f in futures:  # the first failure in file order, once all have finished
            f.exception()
        for f in futures:
            f.result()
    total = sum(int(e.get("size", 0)) for _, e in entries)
    return VerifyReport(len(entries), total, time.perf_counter() - start)
