"""tools/preprocess_data.py and megapmc.data.preprocess: tokens written == tokens read, in every mode."""
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zstandard

from megapmc.data.indexed_dataset import IndexedDataset
from megapmc.data.preprocess import PreprocessConfig, PreprocessError, preprocess
from megapmc.data.tokenizer import build_tokenizer
from megapmc.testing.fixtures import medical_sentences

REPO = Path(__file__).resolve().parents[2]


def make_docs(n, seed=0):
    sents = medical_sentences(n * 6, seed=seed)
    return [" ".join(sents[i * 6:i * 6 + 1 + i % 6]) for i in range(n)]


def write_jsonl(path, records, raw_lines=()):
    lines = [json.dumps(r) for r in records] + list(raw_lines)
    data = ("\n".join(lines) + "\n").encode()
    if str(path).endswith(".gz"):
        data = gzip.compress(data)
    elif str(path).endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    Path(path).write_bytes(data)
    return str(path)


def run(tmp_path, input_path, spm_model, name="out", **kw):
    cfg = PreprocessConfig(input=input_path, output_prefix=str(tmp_path / name), tokenizer_model=str(spm_model),
                           progress=False, **kw)
    return preprocess(cfg), str(tmp_path / name)


def expected_tokens(spm_model, texts, bos=False, eod=False):
    tok = build_tokenizer(spm_model)
    return [[tok.bos_id] * bos + tok.encode(t) + [tok.eod] * eod for t in texts]


def read_all(prefix):
    ds = IndexedDataset(prefix)
    assert ds.document_indices.tolist() == list(range(len(ds) + 1)), "one sequence per document"
    return [x.tolist() for x in ds], ds


@pytest.fixture
def docs_file(tmp_path):
    docs = make_docs(120)
    return docs, write_jsonl(tmp_path / "in.jsonl", [{"text": d, "id": i} for i, d in enumerate(docs)])


def test_one_worker_tokens_round_trip(tmp_path, spm_model, docs_file):
    docs, path = docs_file
    summary, prefix = run(tmp_path, path, spm_model, append_eod=True, batch_size=7)
    got, ds = read_all(prefix + "_text_document")
    want = expected_tokens(spm_model, docs, eod=True)
    assert got == want
    assert ds.dtype == np.uint16
    assert summary.documents == 120 and summary.tokens == {"text": sum(map(len, want))}
    assert summary.skipped == 0 and summary.bytes_written == sum(
        os.path.getsize(prefix + "_text_document" + e) for e in (".bin", ".idx"))


def test_bos_eod_and_several_keys(tmp_path, spm_model):
    docs = make_docs(30, seed=2)
    titles = [d.split(".")[0] for d in docs]
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": d, "title": t} for d, t in zip(docs, titles)])
    summary, prefix = run(tmp_path, path, spm_model, json_keys=("text", "title"), prepend_bos=True,
                          append_eod=True)
    assert read_all(prefix + "_text_document")[0] == expected_tokens(spm_model, docs, bos=True, eod=True)
    assert read_all(prefix + "_title_document")[0] == expected_tokens(spm_model, titles, bos=True, eod=True)
    assert set(summary.tokens) == {"text", "title"}


def test_malformed_lines_reported_with_line_numbers(tmp_path, spm_model):
    records = [{"text": "Sepsis increases mortality."}, {"title": "no text"}, {"text": 3}, {"text": ""},
               {"text": "Asthma reduces oxygen saturation."}]
    path = write_jsonl(tmp_path / "in.jsonl", records, raw_lines=["{broken", "", "[1, 2]"])
    summary, prefix = run(tmp_path, path, spm_model, batch_size=2)
    assert read_all(prefix + "_text_document")[0] == expected_tokens(
        spm_model, ["Sepsis increases mortality.", "Asthma reduces oxygen saturation."])
    assert (summary.skipped_missing_key, summary.skipped_malformed, summary.empty, summary.blank) == (2, 2, 1, 1)
    assert [n for n, _ in summary.issues] == [2, 3, 6, 8]
    reasons = dict(summary.issues)
    assert reasons[2] == "missing key 'text'" and "int, not a string" in reasons[3]
    text = summary.format(path)
    assert "in.jsonl:6: invalid JSON" in text and "2 malformed, 2 missing a key, 1 empty" in text


def test_strict_is_fatal_and_leaves_no_dataset(tmp_path, spm_model, docs_file):
    docs, _ = docs_file
    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": d} for d in docs[:50]] + [{"txt": "x"}])
    with pytest.raises(PreprocessError, match=r"bad\.jsonl:51: missing key 'text'.*--strict"):
        run(tmp_path, path, spm_model, strict=True, batch_size=8)
    assert not [p for p in os.listdir(tmp_path) if p.startswith("out")], "no output, not even temporaries"


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_compressed_input_matches_plain(tmp_path, spm_model, docs_file, suffix):
    docs, plain = docs_file
    compressed = write_jsonl(tmp_path / f"in{suffix}", [{"text": d, "id": i} for i, d in enumerate(docs)])
    run(tmp_path, plain, spm_model, name="plain", append_eod=True)
    run(tmp_path, compressed, spm_model, name="comp", append_eod=True)
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"plain_text_document{ext}").read_bytes() == (tmp_path / f"comp_text_document{ext}").read_bytes()


@pytest.mark.parametrize("workers, partitions, suffix", [(2, 1, ".jsonl"), (2, 2, ".jsonl"), (3, 3, ".jsonl.gz")])
def test_workers_and_partitions_match_one_worker(tmp_path, spm_model, workers, partitions, suffix):
    docs = make_docs(200, seed=1)
    path = write_jsonl(tmp_path / f"in{suffix}", [{"text": d} for d in docs], raw_lines=["oops"])
    ref, _ = run(tmp_path, path, spm_model, name="ref", append_eod=True, batch_size=16)
    par, _ = run(tmp_path, path, spm_model, name="par", append_eod=True, batch_size=16, workers=workers,
                 partitions=partitions)
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"ref_text_document{ext}").read_bytes() == (tmp_path / f"par_text_document{ext}").read_bytes()
    assert par.documents == ref.documents == 200 and par.tokens == ref.tokens
    assert par.issues == ref.issues == [(201, par.issues[0][1])]
    assert sorted(os.listdir(tmp_path)) == sorted([Path(path).name, "ref_text_document.bin", "ref_text_document.idx",
                                                   "par_text_document.bin", "par_text_document.idx"])


def test_config_errors_name_the_flag(tmp_path, spm_model, docs_file):
    _, path = docs_file
    with pytest.raises(PreprocessError, match="--partitions"):
        PreprocessConfig(input=path, output_prefix="x", tokenizer_model=str(spm_model), workers=2, partitions=3)
    with pytest.raises(PreprocessError, match="--input .*missing.jsonl"):
        PreprocessConfig(input=str(tmp_path / "missing.jsonl"), output_prefix="x", tokenizer_model=str(spm_model))
    with pytest.raises(PreprocessError, match="--workers"):
        PreprocessConfig(input=path, output_prefix="x", tokenizer_model=str(spm_model), workers=0)


def test_tool_cli(tmp_path, spm_model, docs_file, capsys):
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import preprocess_data
    finally:
        sys.path.pop(0)
    _, path = docs_file
    rc = preprocess_data.main(["--input", path, "--output-prefix", str(tmp_path / "cli"), "--tokenizer-model",
                               str(spm_model), "--append-eod", "--no-progress"])
    assert rc == 0
    assert "120 documents" in capsys.readouterr().out
    assert IndexedDataset(str(tmp_path / "cli_text_document")).num_documents == 120
    rc = preprocess_data.main(["--input", str(tmp_path / "none.jsonl"), "--output-prefix", "x",
                               "--tokenizer-model", str(spm_model)])
    assert rc == 1 and "none.jsonl does not exist" in capsys.readouterr().err


def test_killed_run_leaves_no_complete_looking_dataset(tmp_path, spm_model):
    docs = make_docs(400, seed=3) * 40  # long enough to be killed mid-way
    path = write_jsonl(tmp_path / "big.jsonl", [{"text": d} for d in docs])
    prefix = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(REPO / "tools" / "preprocess_data.py"), "--input", path,
                             "--output-prefix", str(prefix), "--tokenizer-model", str(spm_model), "--no-progress",
                             "--batch-size", "4"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not any(p.name.startswith("killed_text_document.bin.tmp") for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed_text_document.idx").exists()
    assert not (tmp_path / "killed_text_document.bin").exists()


def test_benchmark_rows(spm_model):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import bench_preprocess
    finally:
        sys.path.pop(0)
    rows = bench_preprocess.bench_preprocess_rows(str(spm_model), copies=1, repeats=1, workers=(1, 2))
    assert [r["setting"] for r in rows] == ["raw tokenizer, 1 thread(s)", "preprocess_data.py --workers 1",
                                            "raw tokenizer, 2 thread(s)", "preprocess_data.py --workers 2"]
    # Every row timed the whole embedded corpus: rate x time is its exact token count, counted here one
    # text at a time (the benchmark counts with the batch encoder and the tool with its own workers).
    tok = build_tokenizer(spm_model)
    texts = [json.loads(line)["text"] for name in ("books", "papers", "general")
             for line in (REPO / "megapmc/sample_data/pretrain" / f"{name}.jsonl").read_text().splitlines()
             if line.strip()]
    num_tokens = sum(len(tok.encode(t)) for t in texts)
    assert num_tokens > 1000
    for r in rows:
        assert r["tokens_per_s"] * r["seconds"] == pytest.approx(num_tokens, rel=1e-9), r
    for raw, tool in zip(rows[::2], rows[1::2]):
        assert raw["vs_raw"] == 1.0 and raw["cpu_vs_raw"] == 1.0
        assert tool["vs_raw"] == pytest.approx(tool["tokens_per_s"] / raw["tokens_per_s"])
        assert tool["cpu_vs_raw"] == pytest.approx(tool["tokens_per_cpu_s"] / raw["tokens_per_cpu_s"])
    assert "tokens/CPU-s" in bench_preprocess.format_rows(rows)


def test_bounded_map_reads_ahead_only_a_little():
    """The reader never runs more than ``max_in_flight`` batches ahead of the writer (constant memory)."""
    from multiprocessing.pool import ThreadPool

    from megapmc.data.preprocess import ordered_bounded_map

    pulled = []

    def items():
        for i in range(100):
            pulled.append(i)
            yield i

    with ThreadPool(2) as pool:
        for consumed, result in enumerate(ordered_bounded_map(pool, lambda x: x * x, items(), max_in_flight=4)):
            assert result == consumed * consumed
            assert len(pulled) - consumed <= 4


def test_hugging_face_tokenizer_in_workers(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(medical_sentences(500), trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    tok.save(str(tmp_path / "tokenizer.json"))
    docs = make_docs(60, seed=4)
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": d} for d in docs])
    run(tmp_path, path, tmp_path / "tokenizer.json", workers=2, append_eod=True, prepend_bos=True, batch_size=8)
    got, _ = read_all(str(tmp_path / "out_text_document"))
    want = [[1] + tok.encode(d, add_special_tokens=False).ids + [2] for d in docs]
    assert got == want
