"""Tensor-at-a-time safetensors files are ordinary safetensors files."""
import pytest
import torch
from safetensors.torch import load_file, save_file

from megapmc.convert.safetensors_stream import SafetensorsReader, SafetensorsWriter


def test_written_out_of_order_reads_back_with_safetensors(tmp_path):
    tensors = {"a": torch.randn(3, 5).bfloat16(), "b": torch.arange(7), "c": torch.randn(2, 2, 3).half(),
               "empty": torch.empty(0, 4)}
    with SafetensorsWriter(tmp_path / "x.safetensors", {k: (v.dtype, v.shape) for k, v in tensors.items()},
                           metadata={"format": "pt"}) as writer:
        for name in ["c", "empty", "a", "b"]:
            writer.write(name, tensors[name])
    loaded = load_file(tmp_path / "x.safetensors")
    reader = SafetensorsReader(tmp_path / "x.safetensors")
    assert reader.metadata == {"format": "pt"}
    for name, t in tensors.items():
        assert torch.equal(loaded[name], t) and torch.equal(reader.get(name), t)


def test_reader_reads_files_written_by_safetensors(tmp_path):
    tensors = {"w": torch.randn(4, 4), "v": torch.randn(3).bfloat16()}
    save_file(tensors, tmp_path / "y.safetensors")
    reader = SafetensorsReader(tmp_path / "y.safetensors")
    assert all(torch.equal(reader.get(n), t) for n, t in tensors.items())


def test_incomplete_file_and_wrong_shape_are_errors(tmp_path):
    writer = SafetensorsWriter(tmp_path / "z.safetensors", {"a": (torch.float32, (2,)), "b": (torch.float32, (3,))})
    with pytest.raises(ValueError, match="has shape"):
        writer.write("a", torch.zeros(3))
    writer.write("a", torch.zeros(2))
    with pytest.raises(RuntimeError, match="never written"):
        writer.close()
