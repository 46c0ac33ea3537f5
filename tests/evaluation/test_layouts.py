"""Every benchmark layout is found under --data-dir and read to the same items, whitespace kept; bad
files are errors naming the file, raised before any model is loaded."""
import json

import pytest

from megapmc.benchmarks import (
    BenchmarkFileError, detect_cop_base, find_benchmark_files, read_medmcqa, read_medqa, read_pubmedqa,
)
from megapmc.evaluation.tasks import TASKS
from benchmark_layouts import FIXTURES, LAYOUTS, layout_dir


def _summary(items):
    return [(it.question, it.texts, it.gold, it.contexts) for it in items]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Each task's items as read from the layout lm-eval itself loads."""
    tmp = tmp_path_factory.mktemp("ref")
    ref = {"medqa": "medqa-gbaker-jsonl", "medmcqa": "medmcqa-hf-jsonl", "pubmedqa": "pubmedqa-bigbio"}
    return {task: _summary(TASKS[task].load(layout_dir(name, tmp), "test").items) for task, name in ref.items()}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_layout_reads_the_same_items(name, reference, tmp_path):
    task = LAYOUTS[name][0]
    loaded = TASKS[task].load(layout_dir(name, tmp_path), "test")
    assert loaded.malformed == []
    assert _summary(loaded.items) == reference[task]


def test_whitespace_is_kept_exactly(tmp_path):
    items = TASKS["medqa"].load(layout_dir("medqa-original", tmp_path), "test").items
    assert items[0].question.endswith("Best treatment? ") and items[0].texts[1] == "Doxycycline "
    assert items[1].texts[0] == " Troponin I" and items[2].question.startswith("  Which")
    pub = TASKS["pubmedqa"].load(layout_dir("pubmedqa-hf-parquet", tmp_path), "test").items
    assert pub[0].contexts[0].endswith("cells.  ") and pub[1].question.startswith(" Is")


def test_discovery_prints_what_it_found_and_skips_unlabelled_test_files():
    found = find_benchmark_files(FIXTURES / "medmcqa_original")
    assert found["medmcqa"].eval.name == "dev.json"
    assert "also seen (not used)" in found["medmcqa"].describe() and "test.json" in found["medmcqa"].describe()
    found = find_benchmark_files(FIXTURES)  # several layouts below one directory: the shallowest wins, all listed
    assert found["medqa"].eval is not None and found["medqa"].others
    five = find_benchmark_files(FIXTURES / "medqa_original")["medqa_5options"]
    assert five.eval.name == "test.jsonl" and read_medqa(five.eval).task == "medqa_5options"


def test_cop_base_is_detected_and_stated(tmp_path):
    original = read_medmcqa(FIXTURES / "medmcqa_original/medmcqa/dev.json")
    hf = read_medmcqa(layout_dir("medmcqa-hf-parquet", tmp_path) / "validation-00000-of-00001.parquet")
    assert "1-based" in original.notes[0] and "0-based" in hf.notes[0]
    assert [it.gold for it in original.items] == [it.gold for it in hf.items] == [2, 3, 0]
    assert detect_cop_base([1, 2, 3])[0] == 1
    with pytest.raises(ValueError, match="both 0 and 4"):
        detect_cop_base([0, 4])


def test_pubmedqa_test_split_follows_ground_truth(tmp_path):
    root = layout_dir("pubmedqa-original", tmp_path) / "pubmedqa/data"
    test = read_pubmedqa(root / "ori_pqal.json", root / "test_ground_truth.json", "test")
    train = read_pubmedqa(root / "ori_pqal.json", root / "test_ground_truth.json", "train")
    assert [it.id for it in test.items] == ["21645374", "16418930", "9488747"] and [it.id for it in train.items] == ["10000001"]
    # The HF copy holds every labelled item; the ground truth beside it selects the test PMIDs.
    hf = layout_dir("pubmedqa-hf-jsonl", tmp_path) / "pqa_labeled/train.jsonl"
    (hf.parent / "test_ground_truth.json").write_text(json.dumps({"16418930": "no"}))
    loaded = TASKS["pubmedqa"].load(None, "test", eval_file=hf)
    assert [it.id for it in loaded.items] == ["16418930"]


# ---- bad input: an error naming the file ---------------------------------------------------------------

def _write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("reader,content,message", [
    (read_medqa, b"", "the file is empty"),
    (read_medqa, b"\n  \n", "only whitespace"),
    (read_medmcqa, b"", "the file is empty"),
    (read_pubmedqa, b"", "the file is empty"),
    (read_medqa, '{"question": "caf\u00e9", "options": {}}\n'.encode("latin-1"), "not UTF-8"),
    (read_medmcqa, b'{"question": "\xff\xfe"}\n', "not UTF-8"),
    (read_pubmedqa, b'{"1": {"QUESTION": "\xe9"}}', "not UTF-8"),
    (read_medqa, b'{"foo": 1}\n', "not a MedQA file"),
    (read_pubmedqa, b'{"foo": 1}\n{"bar": 2}\n', "not a PubMedQA file"),
])
def test_unusable_files_name_the_file(reader, content, message, tmp_path):
    path = _write(tmp_path / "bad" / "test.jsonl", content)
    if reader is read_pubmedqa and content.startswith(b'{"1"'):
        path = path.rename(path.with_name("ori_pqal.json"))
    with pytest.raises(BenchmarkFileError, match=f"{path}.*{message}|{message}.*{path}"):
        reader(path)


def test_missing_files_name_the_file_and_the_flag(tmp_path):
    with pytest.raises(BenchmarkFileError, match="nope.jsonl: not found"):
        read_medqa(tmp_path / "nope.jsonl")
    with pytest.raises(FileNotFoundError, match="medmcqa: no file found under --data-dir.*--medmcqa-file"):
        TASKS["medmcqa"].load(tmp_path)


def test_unlabelled_medmcqa_test_files_are_refused(tmp_path):
    with pytest.raises(BenchmarkFileError, match="test.json: unlabelled.*use dev.json"):
        read_medmcqa(FIXTURES / "medmcqa_original/medmcqa/test.json")
    with pytest.raises(BenchmarkFileError, match="test.jsonl: unlabelled"):
        read_medmcqa(FIXTURES / "medmcqa_hf/test.jsonl")


def test_strict_stops_at_the_first_malformed_record(tmp_path):
    src = (FIXTURES / "medqa_bare_test/test.jsonl").read_text().splitlines()
    path = _write(tmp_path / "test.jsonl", "\n".join([src[0], "{broken", src[1], '{"question": "q"}']).encode())
    loaded = read_medqa(path)
    assert len(loaded.items) == 2 and [m.location for m in loaded.malformed] == [f"{path}:2", f"{path}:4"]
    with pytest.raises(BenchmarkFileError, match=f"{path}:2: not valid JSON.*--strict"):
        read_medqa(path, strict=True)


def test_a_file_of_only_malformed_records_is_an_error(tmp_path):
    path = _write(tmp_path / "dev.json", b'{"question": "q", "opa": "", "cop": 1}\n')
    with pytest.raises(BenchmarkFileError, match="no usable medmcqa items.*missing or empty"):
        read_medmcqa(path)
