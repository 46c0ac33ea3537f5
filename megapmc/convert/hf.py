"""Hugging Face ``LlamaForCausalLM`` directories: streaming reader and sharded writer.

Reads ``model.safetensors`` / ``model-*.safetensors`` / ``pytorch_model*.bin`` (index json included),
one tensor at a time: safetensors through :mod:`megapmc.convert.safetensors_stream`, ``.bin`` files
through ``torch.load(weights_only=True, mmap=True)`` with one file open at a time. Writes ``config.json``,
``generation_config.json``, ``model-0000N-of-0000M.safetensors`` with ``model.safetensors.index.json``
and, given a SentencePiece model, the tokenizer files ``AutoTokenizer.from_pretrained`` loads offline.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from megapmc.convert.errors import ConversionError
from megapmc.convert.name_map import (
    EMBEDDING, IGNORED_HF_SUFFIXES, OUTPUT_LAYER, conversion_units, hf_names, unit_params,
)
from megapmc.convert.safetensors_stream import SafetensorsReader, SafetensorsWriter
from megapmc.convert.sharding import full_shapes
from megapmc.model.config import LlamaConfig

SAFE_INDEX, SAFE_SINGLE = "model.safetensors.index.json", "model.safetensors"
BIN_INDEX, BIN_SINGLE = "pytorch_model.bin.index.json", "pytorch_model.bin"
DEFAULT_MAX_SHARD_BYTES = 5 * 10**9  # Hugging Face's default "5GB"


def read_hf_config(path: Path) -> dict:
    cfg = path / "config.json"
    if not cfg.is_file():
        raise ConversionError(
            f"{path}: no config.json, so this is not a Hugging Face LLaMA checkpoint directory "
            f"(expected config.json plus model*.safetensors or pytorch_model*.bin); check --load-dir and --loader"
        )
    try:
        hf = json.loads(cfg.read_text())
    except json.JSONDecodeError as e:
        raise ConversionError(f"{cfg}: not valid JSON ({e})") from None
    archs = hf.get("architectures") or []
    if hf.get("model_type") != "llama" and "LlamaForCausalLM" not in archs:
        raise ConversionError(
            f"{cfg}: model_type {hf.get('model_type')!r} / architectures {archs} is not a LLaMA model; "
            f"only LlamaForCausalLM checkpoints can be converted"
        )
    return hf


def _weight_map(path: Path) -> dict[str, str]:
    """Tensor name -> file name, from the index json or the single weights file."""
    for index_name in (SAFE_INDEX, BIN_INDEX):
        index = path / index_name
        if index.is_file():
            weight_map = json.loads(index.read_text()).get("weight_map")
            if not weight_map:
                raise ConversionError(f"{index}: has no weight_map")
            missing = sorted({f for f in weight_map.values() if not (path / f).is_file()})
            if missing:
                raise ConversionError(
                    f"{index}: lists shard(s) {', '.join(missing)} that are missing from {path}; "
                    f"copy or download the complete checkpoint"
                )
            return weight_map
    for single in (SAFE_SINGLE, BIN_SINGLE):
        if (path / single).is_file():
            return {name: single for name in _file_keys(path / single)}
    raise ConversionError(
        f"{path}: config.json but no weights ({SAFE_SINGLE}, {SAFE_INDEX}, {BIN_SINGLE} or {BIN_INDEX}); "
        f"the checkpoint is incomplete"
    )


def _file_keys(path: Path) -> list[str]:
    if path.suffix == ".safetensors":
        return SafetensorsReader(path).keys()
    return list(_load_bin(path))


def _load_bin(path: Path) -> dict[str, torch.Tensor]:
    try:  # zip-format files map lazily; only the tensors read are brought into memory
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (pre-1.6) serialization cannot be mapped: load the whole shard
        return torch.load(path, map_location="cpu", weights_only=True)


class HFLoader:
    """Reads a ``LlamaForCausalLM`` directory unit by unit (embedding, each layer, final norm + head)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise ConversionError(f"--load-dir {self.path} is not a directory")
        hf = read_hf_config(self.path)
        try:
            self.config = LlamaConfig.from_hf(hf)
        except (KeyError, ValueError, TypeError) as e:
            raise ConversionError(f"{self.path / 'config.json'}: not a usable LLaMA config ({e})") from None
        self.tie_word_embeddings = bool(hf.get("tie_word_embeddings", False))
        self.weight_map = _weight_map(self.path)
        self._readers: dict[str, SafetensorsReader] = {}
        self._bin_name: str | None = None
        self._bin: dict[str, torch.Tensor] = {}
        expected = set(hf_names(self.config.num_layers))
        if self.tie_word_embeddings:
            expected.discard(OUTPUT_LAYER.hf[0])
        missing = sorted(expected - set(self.weight_map))
        if missing:
            raise ConversionError(
                f"{self.path}: tensors {missing[:4]}{' ...' if len(missing) > 4 else ''} are missing "
                f"({len(missing)} of {len(expected)}); a shard is missing or config.json does not describe "
                f"these weights"
            )
        unexpected = sorted(n for n in set(self.weight_map) - expected
                            if not n.endswith(IGNORED_HF_SUFFIXES) and n != OUTPUT_LAYER.hf[0])
        if unexpected:
            warnings.warn(f"{self.path}: ignoring tensors not part of LlamaForCausalLM: {unexpected[:5]}")

    @property
    def tokenizer_model(self) -> Path | None:
        """This directory if it carries a tokenizer (megapmc's build_tokenizer and the exporter take it)."""
        has = any((self.path / f).is_file() for f in ("tokenizer.json", "tokenizer.model"))
        return self.path if has else None

    def _get(self, name: str) -> torch.Tensor:
        file = self.weight_map[name]
        if file.endswith(".safetensors"):
            if file not in self._readers:
                self._readers[file] = SafetensorsReader(self.path / file)
            return self._readers[file].get(name)
        if file != self._bin_name:
            self._bin = {}  # release the previous shard before mapping the next: one .bin open at a time
            self._bin, self._bin_name = _load_bin(self.path / file), file
        return self._bin[name].clone()

    def read_unit(self, unit) -> dict[str, torch.Tensor]:
        out = {}
        for spec in unit_params(unit):
            for name in spec.hf:
                tied = name == OUTPUT_LAYER.hf[0] and self.tie_word_embeddings
                out[name] = self._get(EMBEDDING.hf[0] if tied else name)
        return out

    def close(self) -> None:
        self._bin, self._bin_name, self._readers = {}, None, {}


def plan_hf_shards(config: LlamaConfig, dtype: torch.dtype, max_shard_bytes: int) -> list[dict[str, tuple]]:
    """Group the tensors, in storage order, into files of at most ``max_shard_bytes`` (a tensor larger
    than the limit gets a file of its own), the way ``save_pretrained`` shards."""
    element = torch.empty((), dtype=dtype).element_size()
    files: list[dict[str, tuple]] = [{}]
    size = 0
    for unit_specs in (unit_params(u) for u in conversion_units(config.num_layers)):
        for spec in unit_specs:
            for name, shape in zip(spec.hf, full_shapes(spec, config)):
                nbytes = element * torch.Size(shape).numel()
                if files[-1] and size + nbytes > max_shard_bytes:
                    files.append({})
                    size = 0
                files[-1][name] = (dtype, shape)
                size += nbytes
    return files


class HFSaver:
    """Writes a ``LlamaForCausalLM`` directory as units arrive; ``finish()`` adds configs and tokenizer."""

    def __init__(self, out_dir: str | Path, config: LlamaConfig, dtype: torch.dtype = torch.bfloat16,
                 max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, tokenizer_model: str | Path | None = None,
                 added_tokens: list[str] | None = None):
        self.out_dir = Path(out_dir)
        self.config, self.dtype = config, dtype
        self.tokenizer_model = Path(tokenizer_model) if tokenizer_model else None
        self.added_tokens = list(added_tokens or [])
        self.out_dir.mkdir(parents=True, exist_ok=True)
        plan = plan_hf_shards(config, dtype, max_shard_bytes)
        n = len(plan)
        self._writers = []
        self._file_of: dict[str, int] = {}
        self.weight_map: dict[str, str] = {}
        for i, layout in enumerate(plan):
            file = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            self._writers.append(SafetensorsWriter(self.out_dir / file, layout, metadata={"format": "pt"}))
            for name in layout:
                self._file_of[name], self.weight_map[name] = i, file

    def write_unit(self, unit, tensors: dict[str, torch.Tensor]) -> None:
        for name, tensor in tensors.items():
            self._writers[self._file_of[name]].write(name, tensor)

    def finish(self) -> None:
        for w in self._writers:
            w.close()
        total = sum(w.total_bytes for w in self._writers)
        index = {"metadata": {"total_size": total}, "weight_map": self.weight_map}
        (self.out_dir / SAFE_INDEX).write_text(json.dumps(index, indent=2))
        special = write_hf_tokenizer(self.out_dir, self.tokenizer_model, self.config, self.added_tokens) \
            if self.tokenizer_model else {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None}
        write_hf_config(self.out_dir, self.config, self.dtype, special)


def write_hf_config(out_dir: Path, config: LlamaConfig, dtype: torch.dtype, special: dict) -> None:
    """``config.json`` and ``generation_config.json`` through transformers itself, so the installed
    version accepts them."""
    import transformers

    hf = {**config.to_hf(), **special}
    hf_config = transformers.LlamaConfig(**hf)
    hf_config.dtype = dtype
    hf_config.save_pretrained(out_dir)
    transformers.GenerationConfig(**special).save_pretrained(out_dir)


TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json")


def write_hf_tokenizer(out_dir: Path, tokenizer: Path, config: LlamaConfig, added_tokens: list[str]) -> dict:
    """Write the tokenizer files ``AutoTokenizer.from_pretrained(out_dir)`` loads offline, from a
    SentencePiece ``tokenizer.model``, a ``tokenizer.json``, or a directory holding Hugging Face tokenizer
    files; return the special token ids for the configs. The tokenizer must have exactly
    ``config.vocab_size`` tokens (added tokens included): the exported embedding has one row per token."""
    import transformers

    tokenizer = Path(tokenizer)
    if not tokenizer.exists():
        raise ConversionError(f"--tokenizer-model {tokenizer}: no such file or directory")
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
        if tokenizer.is_dir():
            found = [f for f in TOKENIZER_FILES if (tokenizer / f).is_file()]
            if not found:
                raise ConversionError(f"--tokenizer-model {tokenizer}: directory without tokenizer.model or tokenizer.json")
            if found == ["tokenizer.model"]:
                return write_hf_tokenizer(out_dir, tokenizer / "tokenizer.model", config, added_tokens)
            for f in found:
                shutil.copyfile(tokenizer / f, staging / f)
        elif tokenizer.suffix == ".json":
            _stage_tokenizer_json(tokenizer, staging)
        else:
            _stage_sentencepiece(tokenizer, staging, config)
        loaded = transformers.AutoTokenizer.from_pretrained(staging)
    if added_tokens:
        loaded.add_tokens(added_tokens, special_tokens=True)
    if len(loaded) != config.vocab_size:
        raise ConversionError(
            f"--tokenizer-model {tokenizer} has {len(loaded)} tokens"
            f"{f' ({len(added_tokens)} added)' if added_tokens else ''}, but the model's vocab_size is "
            f"{config.vocab_size}; pass the tokenizer the model was trained with (or --added-tokens)"
        )
    loaded.save_pretrained(out_dir)
    if tokenizer.is_file() and tokenizer.suffix != ".json":
        shutil.copyfile(tokenizer, out_dir / "tokenizer.model")
    special = {k: getattr(loaded, k) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (out_dir / "special_tokens_map.json").write_text(
        json.dumps({k: v for k, v in special.items() if v is not None}, indent=2))
    return {"bos_token_id": loaded.bos_token_id, "eos_token_id": loaded.eos_token_id,
            "pad_token_id": loaded.pad_token_id}


def _stage_sentencepiece(model: Path, staging: Path, config: LlamaConfig) -> None:
    """``tokenizer.model`` plus a ``tokenizer_config.json`` naming ``LlamaTokenizer``; transformers converts
    the SentencePiece model into ``tokenizer.json`` when it loads it."""
    import sentencepiece as spm

    try:
        sp = spm.SentencePieceProcessor(model_file=str(model))
    except (RuntimeError, OSError) as e:
        raise ConversionError(f"--tokenizer-model {model}: not a SentencePiece model ({e})") from None
    piece = lambda i: sp.id_to_piece(i) if i >= 0 else None  # noqa: E731
    shutil.copyfile(model, staging / "tokenizer.model")
    (staging / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "legacy": False,
        "clean_up_tokenization_spaces": False, "model_max_length": config.max_position_embeddings,
        "bos_token": piece(sp.bos_id()), "eos_token": piece(sp.eos_id()), "unk_token": piece(sp.unk_id()),
        "pad_token": piece(sp.pad_id()),
    }))


def _stage_tokenizer_json(path: Path, staging: Path) -> None:
    """A bare ``tokenizer.json``: BOS/EOS/PAD found the way megapmc's own tokenizer finds them."""
    from megapmc.data.tokenizer import build_tokenizer
    from tokenizers import Tokenizer

    ours, raw = build_tokenizer(path), Tokenizer.from_file(str(path))
    token = lambda i: raw.id_to_token(i) if i is not None else None  # noqa: E731
    shutil.copyfile(path, staging / "tokenizer.json")
    (staging / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
        "bos_token": token(ours.bos_id), "eos_token": token(ours.eos_id), "pad_token": token(ours.pad_id),
    }))
