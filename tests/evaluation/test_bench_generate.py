"""benchmarks/bench_generate.py runs and its two variants agree (it exits if the tokens differ)."""
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_bench_generate_smoke(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_generate

    result = bench_generate.main(["--num-layers", "1", "--hidden-size", "64", "--vocab-size", "300",
                                  "--prompt-length", "16", "--new-tokens", "6", "--batch-size", "2",
                                  "--repeats", "1", "--json", str(tmp_path / "out.json")])
    assert result["new_tokens"] == 12  # the unreachable EOS: every row generates all its tokens
    assert set(result["variants"]) == {"cached", "uncached"}
    assert (tmp_path / "out.json").is_file()
