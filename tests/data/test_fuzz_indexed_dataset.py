"""1,000 randomly corrupted ``.bin``/``.idx`` pairs through the loader and the tools (issue 14): no crash,
no hang, and no damaged index accepted as something else.

Base files are written from Megatron's layout (megatron/core/datasets/indexed_dataset.py, ``_IndexWriter``:
9-byte magic ``MMIDIDX\\0\\0``, u64 version 1, u8 dtype code, u64 sequence count, u64 document count, then
i32 lengths, i64 byte pointers, i64 document indices; ``.bin`` is the raw tokens), not by our builder.
Each trial flips bytes, truncates or extends one file, in its header or its body, then opens it
(``IndexedDataset``: validation in C++), reads every sequence, scans the token range, merges it
(``merge_datasets``) and plans a run on it (``tools/data_plan.py``). Outcomes:

- rejected: a ValueError/IndexedDatasetError (or FileNotFoundError) whose message names the file;
- accepted with the original content (e.g. a uint16 code flipped to int16 over small tokens);
- accepted with other tokens: only possible for bytes flipped inside ``.bin`` (the format has no checksum
  and the values stay in range); anything else accepted with other content is a silent acceptance.

The trials run in a child process, so a crash or hang fails the test with the trial that caused it.
"""
import contextlib
import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SEED, TRIALS, VOCAB = 1234, 1000, 1000
HEADER = 34
MAGIC = b"MMIDIDX\x00\x00"
ITEMSIZE = {8: 2, 4: 4}  # dtype codes used here: uint16, int32


def write_reference(prefix: str, code: int, sequences: list[list[int]], documents: list[int]) -> None:
    dtype = {8: "<u2", 4: "<i4"}[code]
    np.concatenate([np.asarray(s, dtype=dtype) for s in sequences]).tofile(prefix + ".bin")
    lengths = [len(s) for s in sequences]
    pointers = list(np.cumsum([0] + lengths[:-1]) * ITEMSIZE[code])
    with open(prefix + ".idx", "wb") as f:
        f.write(MAGIC + struct.pack("<QB", 1, code) + struct.pack("<QQ", len(lengths), len(documents)))
        f.write(struct.pack(f"<{len(lengths)}i", *lengths))
        f.write(struct.pack(f"<{len(pointers)}q", *pointers))
        f.write(struct.pack(f"<{len(documents)}q", *documents))


def _bases(root: Path, rng) -> list[str]:
    out = []
    for i, code in enumerate((8, 4, 8)):
        n = int(rng.integers(3, 9))
        seqs = [rng.integers(0, VOCAB, size=int(rng.integers(1, 20))).tolist() for _ in range(n)]
        cuts = sorted(set([0, n] + rng.choice(np.arange(1, n), size=min(2, n - 1), replace=False).tolist()))
        prefix = str(root / f"base{i}")
        write_reference(prefix, code, seqs, cuts)
        out.append(prefix)
    return out


def _mutate(rng, idx: bytes, bin_: bytes) -> tuple[bytes, bytes, str]:
    which = "idx" if rng.random() < 0.7 else "bin"
    data = bytearray(idx if which == "idx" else bin_)
    kind = rng.choice(["flip", "flip", "truncate", "extend"])
    region = "header" if which == "idx" and rng.random() < 0.5 else "body"
    lo, hi = (0, HEADER) if region == "header" else ((HEADER if which == "idx" else 0), len(data))
    if kind == "flip":
        for _ in range(int(rng.integers(1, 4))):
            pos = int(rng.integers(lo, max(hi, lo + 1)))
            if pos < len(data):
                data[pos] ^= int(rng.integers(1, 256))
    elif kind == "truncate":
        del data[int(rng.integers(lo, max(hi, lo + 1))):]
    else:
        pos = len(data) if region == "body" else int(rng.integers(lo, hi))
        data[pos:pos] = rng.integers(0, 256, size=int(rng.integers(1, 16))).astype(np.uint8).tobytes()
    out = bytes(data)
    return (out, bin_, f"idx-{region}-{kind}") if which == "idx" else (idx, out, f"bin-{region}-{kind}")


def _content(ds) -> tuple:
    return ([s.astype(np.int64).tolist() for s in ds], ds.document_indices.tolist())


def _exercise(prefix: str, out_dir: Path) -> tuple:
    """Everything a user's run does with a dataset; returns its content if all of it accepted the files."""
    from megapmc.data.indexed_dataset import IndexedDataset, merge_datasets

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
    import data_plan

    ds = IndexedDataset(prefix)
    content = _content(ds)
    ds.check_token_range(VOCAB)
    merged = merge_datasets(str(out_dir / "merged"), [prefix, prefix])
    assert len(merged) == 2 * len(ds)
    with contextlib.redirect_stdout(io.StringIO()):
        data_plan.main(["--data-path", "1", prefix, "--seq-length", "4", "--global-batch-size", "2",
                        "--train-epochs", "1"])
    return content


def run_trials(root: Path, seed: int, trials: int) -> dict:
    from megapmc.data.indexed_dataset import IndexedDataset

    rng = np.random.default_rng(seed)
    bases = _bases(root, rng)
    originals = {b: _content(IndexedDataset(b)) for b in bases}
    tally = {"rejected": 0, "same_content": 0, "bin_tokens_changed": 0, "silent": [], "unclear": []}
    for t in range(trials):
        base = bases[int(rng.integers(len(bases)))]
        idx, bin_, what = _mutate(rng, Path(base + ".idx").read_bytes(), Path(base + ".bin").read_bytes())
        prefix = str(root / "trial")
        Path(prefix + ".idx").write_bytes(idx)
        Path(prefix + ".bin").write_bytes(bin_)
        print(f"trial {t} {what}", flush=True)  # the last line names the culprit of a crash or hang
        try:
            content = _exercise(prefix, root)
        except (ValueError, FileNotFoundError) as e:
            if "trial." not in str(e):
                tally["unclear"].append(f"{t} {what}: {e}")
            tally["rejected"] += 1
            continue
        if content == originals[base]:
            tally["same_content"] += 1
        elif what.startswith("bin-body-flip"):
            tally["bin_tokens_changed"] += 1
        else:
            tally["silent"].append(f"{t} {what}")
    return tally


@pytest.mark.slow
def test_fuzzed_shards_never_crash_hang_or_pass_as_valid(tmp_path):
    proc = subprocess.run([sys.executable, __file__, str(tmp_path), str(SEED), str(TRIALS)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    last = [l for l in proc.stdout.splitlines() if l.startswith("trial ")][-1:]
    assert proc.returncode == 0, f"crashed (exit {proc.returncode}) at {last}: {proc.stderr[-2000:]}"
    tally = json.loads(proc.stdout.splitlines()[-1])
    total = tally["rejected"] + tally["same_content"] + tally["bin_tokens_changed"] + len(tally["silent"])
    assert total == TRIALS
    assert tally["silent"] == [], tally["silent"]
    assert tally["unclear"] == [], tally["unclear"][:5]  # every rejection names the damaged file
    assert tally["rejected"] > 0.8 * TRIALS, tally


if __name__ == "__main__":
    result = run_trials(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
    print(json.dumps(result))
