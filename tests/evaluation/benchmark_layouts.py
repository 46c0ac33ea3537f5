"""The fixture layouts (``fixtures/README.md``) and their parquet copies, for the layout and parity tests."""
import json
import shutil
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# layout name -> (task, fixture directory, file to turn into parquet or None)
LAYOUTS = {
    "medqa-original": ("medqa", "medqa_original", None),
    "medqa-bare-phrases": ("medqa", "medqa_bare_phrases", None),
    "medqa-bare-test": ("medqa", "medqa_bare_test", None),
    "medqa-gbaker-jsonl": ("medqa", "medqa_gbaker", None),
    "medqa-gbaker-parquet": ("medqa", "medqa_gbaker", "data/test.jsonl"),
    "medmcqa-original": ("medmcqa", "medmcqa_original", None),
    "medmcqa-hf-jsonl": ("medmcqa", "medmcqa_hf", None),
    "medmcqa-hf-parquet": ("medmcqa", "medmcqa_hf", "validation.jsonl"),
    "pubmedqa-original": ("pubmedqa", "pubmedqa_original", None),
    "pubmedqa-hf-jsonl": ("pubmedqa", "pubmedqa_hf", None),
    "pubmedqa-hf-parquet": ("pubmedqa", "pubmedqa_hf", "pqa_labeled/train.jsonl"),
    "pubmedqa-bigbio": ("pubmedqa", "pubmedqa_bigbio", None),
}


def to_parquet(jsonl: Path) -> Path:
    """The rows of ``jsonl`` as the HF hub's parquet file beside it (nested structs kept), jsonl removed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    out = jsonl.with_name(jsonl.stem + "-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows), out)
    jsonl.unlink()
    return out


def layout_dir(name: str, tmp_path: Path) -> Path:
    """A data directory holding layout ``name`` (a copy, so tests may break it)."""
    _, fixture, parquet = LAYOUTS[name]
    root = tmp_path / name
    shutil.copytree(FIXTURES / fixture, root)
    if parquet:
        to_parquet(root / parquet)
    return root
