"""Safetensors files read and written one tensor at a time, with bounded memory.

``safetensors.torch.save_file`` needs every tensor of a file in memory at once, and ``safe_open`` maps the
whole file, so every page it touches stays in the process's resident set. Conversion of a 13B model must
hold no more than one layer, so this module writes a file whose layout (names, dtypes, shapes) is known in
advance by reserving the header first and then writing each tensor at its offset, and reads a tensor with
a plain ``readinto``. The files are ordinary safetensors files (``safetensors.torch.load_file`` reads them).
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import torch

DTYPES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}
TORCH_DTYPES = {v: k for k, v in DTYPES.items()}


def _nbytes(dtype: torch.dtype, shape: tuple[int, ...]) -> int:
    return math.prod(shape) * torch.empty((), dtype=dtype).element_size()


def read_header(path: str | Path) -> dict:
    """The JSON header of a safetensors file: name -> {dtype, shape, data_offsets}, plus ``__metadata__``."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: too short to be a safetensors file")
        (size,) = struct.unpack("<Q", raw)
        if size > 100 * 2**20:
            raise ValueError(f"{path}: header of {size} bytes; not a safetensors file")
        try:
            return json.loads(f.read(size))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: unreadable safetensors header ({e})") from None


class SafetensorsReader:
    """Reads single tensors of a safetensors file without mapping the file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        header = read_header(self.path)
        self.metadata = header.pop("__metadata__", {}) or {}
        self.entries = header
        self._data_start = 8 + struct.unpack("<Q", self.path.open("rb").read(8))[0]

    def keys(self) -> list[str]:
        return list(self.entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.entries[name]["shape"])

    def get(self, name: str) -> torch.Tensor:
        entry = self.entries[name]
        dtype = TORCH_DTYPES.get(entry["dtype"])
        if dtype is None:
            raise ValueError(f"{self.path}: tensor {name} has unsupported dtype {entry['dtype']}")
        begin, end = entry["data_offsets"]
        out = torch.empty(entry["shape"], dtype=dtype)
        if end - begin != out.numel() * out.element_size():
            raise ValueError(f"{self.path}: tensor {name} has {end - begin} bytes for shape {entry['shape']}")
        if end > begin:
            with open(self.path, "rb") as f:
                f.seek(self._data_start + begin)
                view = out.view(-1).view(torch.uint8).numpy()
                if f.readinto(view) != end - begin:
                    raise ValueError(f"{self.path}: truncated while reading tensor {name}")
        return out


class SafetensorsWriter:
    """Writes a safetensors file whose tensors arrive one at a time, in any order.

    ``layout`` maps each name to ``(dtype, shape)``; the header is written up front and ``close()``
    fails if a tensor was never written, so a half-written file is never mistaken for a complete one.
    """

    def __init__(self, path: str | Path, layout: dict[str, tuple[torch.dtype, tuple[int, ...]]],
                 metadata: dict[str, str] | None = None):
        self.path = Path(path)
        self.layout = {name: (dtype, tuple(shape)) for name, (dtype, shape) in layout.items()}
        header: dict = {"__metadata__": dict(metadata or {})}
        offset = 0
        for name, (dtype, shape) in self.layout.items():
            size = _nbytes(dtype, shape)
            header[name] = {"dtype": DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
            offset += size
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as safetensors writes it
        self._offsets = {name: header[name]["data_offsets"][0] for name in self.layout}
        self._data_start = 8 + len(raw)
        self.total_bytes = offset
        self._pending = set(self.layout)
        self._file = open(self.path, "wb")
        self._file.write(struct.pack("<Q", len(raw)) + raw)
        self._file.truncate(self._data_start + offset)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        if name not in self.layout:
            raise KeyError(f"{self.path}: {name} is not in this file's layout")
        dtype, shape = self.layout[name]
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{self.path}: {name} has shape {tuple(tensor.shape)}, layout says {shape}")
        data = tensor.detach().to(device="cpu", dtype=dtype).contiguous()
        self._file.seek(self._data_start + self._offsets[name])
        if data.numel():
            self._file.write(data.view(-1).view(torch.uint8).numpy().data)
        self._pending.discard(name)

    def close(self) -> None:
        self._file.close()
        if self._pending:
            raise RuntimeError(f"{self.path}: never written: {sorted(self._pending)[:5]}")

    def __enter__(self) -> "SafetensorsWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._file.close()
