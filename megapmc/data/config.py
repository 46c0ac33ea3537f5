"""The pretraining data settings: which shards, how they are blended and split, and how they are loaded.

``data_path`` is given Megatron-style: ``["15", "BOOKS", "4", "PAPERS", "1", "GENERAL"]`` (weight, prefix
pairs; integer or fractional weights), a single prefix, or a materialised blended stream (its manifest
``OUT.manifest.json`` or its shard prefix ``OUT``; see :mod:`megapmc.data.materialize`).

Validation and test data come either from ``split`` (documents held out of every training source, so an
epoch misses them) or from separate shards, ``valid_data_path`` / ``test_data_path`` (Megatron's
``--valid-data-path`` / ``--test-data-path``, same syntax as ``data_path``); with separate shards the
training sources are not split, so an epoch is every document of the epoch source.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

MANIFEST_SUFFIX = ".manifest.json"
DEFAULT_SPLIT = "969,30,1"  # Megatron's default, when no separate validation/test shards are given


@dataclass(frozen=True)
class DataSource:
    """One blended source: a shard prefix, its weight, and the short name used in plans and flags."""

    name: str
    prefix: str
    weight: float


def source_name(prefix: str) -> str:
    """``/data/books_text_document`` -> ``books`` (the name ``--epoch-source`` and the data plan use)."""
    base = os.path.basename(os.path.normpath(prefix))
    for suffix in ("_text_document", "_document"):
        if base.endswith(suffix) and len(base) > len(suffix):
            return base[: -len(suffix)]
    return base


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_data_path(data_path: list[str]) -> list[DataSource]:
    """Parse ``W1 P1 W2 P2 ...`` (or one prefix, or prefixes without weights, weighted equally)."""
    if not data_path:
        raise ValueError("--data-path is empty: give a prefix or weight/prefix pairs such as "
                         "'15 BOOKS 4 PAPERS 1 GENERAL'")
    items = [str(x) for x in data_path]
    if not any(_is_number(x) for x in items):
        pairs = [(1.0, p) for p in items]
    else:
        if len(items) % 2:
            raise ValueError(f"--data-path {' '.join(items)}: expected weight/prefix pairs such as "
                             f"'15 BOOKS 4 PAPERS 1 GENERAL', got an odd number of entries")
        pairs = []
        for i in range(0, len(items), 2):
            w, p = items[i], items[i + 1]
            if not _is_number(w):
                raise ValueError(f"--data-path entry {i + 1} ({w!r}) should be a weight before prefix {p!r}")
            pairs.append((float(w), p))
    sources = []
    for w, p in pairs:
        if not w > 0 or w != w or w == float("inf"):
            raise ValueError(f"--data-path weight {w} for {p!r} must be a positive finite number")
        sources.append(DataSource(source_name(p), p, w))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):  # names must pick one source for --epoch-source and the plan
        sources = [DataSource(f"{s.name}#{i}", s.prefix, s.weight) for i, s in enumerate(sources)]
    return sources


def parse_split(split: str) -> tuple[float, float, float]:
    """``"969,30,1"`` -> train/valid/test fractions (Megatron's rule: missing parts are 0)."""
    try:
        parts = [float(x) for x in split.replace("/", ",").split(",")]
    except ValueError:
        raise ValueError(f"--split {split!r}: expected comma-separated numbers such as '969,30,1'") from None
    if not 1 <= len(parts) <= 3 or any(p < 0 for p in parts) or sum(parts) <= 0:
        raise ValueError(f"--split {split!r}: expected 1 to 3 non-negative numbers with a positive sum")
    parts += [0.0] * (3 - len(parts))
    total = sum(parts)
    return tuple(p / total for p in parts)  # type: ignore[return-value]


def _as_list(path) -> Optional[list[str]]:
    if not path:
        return None
    return path.split() if isinstance(path, str) else [str(x) for x in path]


def manifest_path_for(entry: str) -> Optional[str]:
    """The manifest of a materialised stream named by ``entry`` (the manifest itself or the shard prefix)."""
    if entry.endswith(".json"):
        return entry
    if os.path.isfile(entry + MANIFEST_SUFFIX):
        return entry + MANIFEST_SUFFIX
    return None


@dataclass
class DataConfig:
    """Pretraining data settings.

    Attributes:
        data_path: Megatron-style ``W1 P1 W2 P2 ...``, one prefix, or a materialised stream.
        split: train/valid/test proportions of each source's documents; default ``969,30,1``, or ``1``
            (train on everything) when ``valid_data_path`` / ``test_data_path`` give held-out shards.
        valid_data_path: held-out validation shards (``W1 P1 ...`` or one prefix), all documents used.
        test_data_path: held-out test shards, likewise.
        seq_length: tokens per sample are ``seq_length + 1`` (inputs and shifted labels); ``None`` leaves it
            to the caller of ``build_pretraining_datasets`` (the trainer passes the model's).
        seed: seeds the document and sample shuffles; ``None`` leaves it to the caller likewise.
        epoch_source: the source whose one pass is an epoch (name, prefix or index); default the first.
        micro_batch_size: the blend gives every slice of this many samples (one micro-batch on one DP rank)
            floor or ceil of its share; the exact per-global-batch counts hold for any value.
        eval_samples: samples of the validation and test blends; default one pass of the smallest source's split.
        num_workers: DataLoader worker processes. 0 is fastest when the shards sit on a local disk or in the
            page cache (the C++ gather of a micro-batch costs less than moving it between processes);
            workers help when reads stall on a cold or remote file system.
        cache_dir: where the index ``.npy`` files go; default ``index-cache/`` beside the first source.
    """

    data_path: list[str]
    split: Optional[str] = None
    valid_data_path: Optional[list[str]] = None
    test_data_path: Optional[list[str]] = None
    seq_length: Optional[int] = None
    seed: Optional[int] = None
    epoch_source: Optional[str] = None
    micro_batch_size: int = 1
    eval_samples: Optional[int] = None
    num_workers: int = 0
    cache_dir: Optional[str] = None
    sources: list[DataSource] = field(init=False)
    valid_sources: list[DataSource] = field(init=False)
    test_sources: list[DataSource] = field(init=False)
    manifest: Optional[str] = field(init=False)
    split_fractions: tuple[float, float, float] = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.data_path, str):
            self.data_path = self.data_path.split()
        self.data_path = [str(x) for x in self.data_path]
        if self.seq_length is not None and self.seq_length < 1:
            raise ValueError(f"--seq-length must be >= 1, got {self.seq_length}")
        if self.micro_batch_size < 1:
            raise ValueError(f"--micro-batch-size must be >= 1, got {self.micro_batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"--num-workers must be >= 0, got {self.num_workers}")
        if self.eval_samples is not None and self.eval_samples < 0:
            raise ValueError(f"--eval-samples must be >= 0, got {self.eval_samples}")
        held_out = {"valid": _as_list(self.valid_data_path), "test": _as_list(self.test_data_path)}
        self.valid_data_path, self.test_data_path = held_out["valid"], held_out["test"]
        if self.split is None:
            self.split = DEFAULT_SPLIT if not any(held_out.values()) else "1"
        self.split_fractions = parse_split(self.split)
        for i, (name, path) in enumerate(held_out.items(), start=1):
            if path and self.split_fractions[i] > 0:
                raise ValueError(f"--{name}-data-path gives separate {name} shards, but --split {self.split} also "
                                 f"holds {name} documents out of the training sources; use --split 1 (or leave "
                                 f"--split out)")
        self.valid_sources = parse_data_path(held_out["valid"]) if held_out["valid"] else []
        self.test_sources = parse_data_path(held_out["test"]) if held_out["test"] else []
        self.manifest = manifest_path_for(self.data_path[0]) if len(self.data_path) == 1 else None
        if self.manifest is not None:
            if self.valid_sources or self.test_sources:
                raise ValueError("--valid-data-path/--test-data-path go with weighted --data-path shards, not "
                                 "with a materialised stream (its manifest fixes the whole run)")
            if not os.path.isfile(self.manifest):
                raise FileNotFoundError(f"--data-path {self.data_path[0]}: manifest {self.manifest} does not exist")
            self.sources = []
            return
        self.sources = parse_data_path(self.data_path)
        self.epoch_source_index()  # fail at configuration time on a bad name

    def epoch_source_index(self) -> int:
        """Index of the epoch source in ``sources``."""
        return resolve_source(self.epoch_source, [s.name for s in self.sources], [s.prefix for s in self.sources])

    def resolved_cache_dir(self) -> str:
        if self.cache_dir:
            return self.cache_dir
        return os.path.join(os.path.dirname(os.path.abspath(self.sources[0].prefix)), "index-cache")


def resolve_source(which: Optional[str], names: list[str], prefixes: Optional[list[str]] = None) -> int:
    """Index of the source named ``which`` (a name, a prefix or an index); ``None`` means the first."""
    if which is None or which == "":
        return 0
    which = str(which)
    if which in names:
        return names.index(which)
    if prefixes and which in prefixes:
        return prefixes.index(which)
    if which.isdigit() and int(which) < len(names):
        return int(which)
    matches = [i for i, n in enumerate(names) if which.lower() in n.lower()]
    if len(matches) == 1:
        return matches[0]
    raise ValueError(f"--epoch-source {which!r} names none of the sources {names} "
                     f"(give a name, a prefix or an index 0..{len(names) - 1})")


def add_data_args(parser):
    """The pretraining-data flags (Megatron's names), for ``megapmc.pretrain`` and the data tools alike;
    returns the argument group, so a caller can add its own data flags to it."""
    g = parser.add_argument_group("data")
    g.add_argument("--data-path", nargs="+",
                   help="PREFIX, or weighted 'W1 PREFIX1 W2 PREFIX2 ...' (15:4:1), or a materialised OUT.manifest.json")
    add_held_out_args(g)  # --split, --valid-data-path, --test-data-path
    g.add_argument("--epoch-source", default=None,
                   help="the source whose passes --train-epochs counts (default: the first)")
    g.add_argument("--data-cache-path", default=None,
                   help="where the sample/shuffle/blending indices are cached (default: beside the data)")
    return g


def add_run_shape_args(parser) -> None:
    """What fixes a blend besides the data, for the data tools (the trainer's own flags hold these)."""
    g = parser.add_argument_group("run shape")
    g.add_argument("--seq-length", type=int, required=True)
    g.add_argument("--global-batch-size", type=int, required=True)
    g.add_argument("--micro-batch-size", type=int, default=1,
                   help="slices of this size get floor/ceil of each source's share")
    g.add_argument("--seed", type=int, default=1234)
    run = g.add_mutually_exclusive_group(required=True)
    run.add_argument("--train-epochs", type=float, help="passes over the epoch source")
    run.add_argument("--train-iters", type=int)
    run.add_argument("--train-samples", type=int)


def add_held_out_args(group) -> None:
    """``--split`` and the separate held-out shards, shared with ``megapmc.pretrain``."""
    group.add_argument("--split", default=None,
                       help=f"train,valid,test proportions of each source's documents (default {DEFAULT_SPLIT}, "
                            f"or 1 when --valid-data-path/--test-data-path give held-out shards)")
    group.add_argument("--valid-data-path", nargs="+", default=None,
                       help="held-out validation shards, W1 PREFIX1 ... or one prefix (not part of an epoch)")
    group.add_argument("--test-data-path", nargs="+", default=None, help="held-out test shards, likewise")


def data_config_from_args(args) -> DataConfig:
    return DataConfig(data_path=args.data_path, split=args.split, valid_data_path=args.valid_data_path,
                      test_data_path=args.test_data_path, seq_length=args.seq_length, seed=args.seed,
                      epoch_source=args.epoch_source, micro_batch_size=args.micro_batch_size,
                      cache_dir=args.data_cache_path)


def train_samples_from_args(args) -> Optional[int]:
    """``--train-samples``, or ``--train-iters`` x ``--global-batch-size``; ``None`` when epochs are given."""
    if args.train_samples is not None:
        return args.train_samples
    if args.train_iters is not None:
        return args.train_iters * args.global_batch_size
    return None
