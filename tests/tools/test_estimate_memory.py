"""tools/estimate_memory.py: the issue's command, its JSON, the layouts table, and clear errors."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "estimate_memory.py"
ISSUE_COMMAND = ["--model", "llama-13b", "--tensor-model-parallel-size", "8", "--data-parallel-size", "4",
                 "--micro-batch-size", "1", "--seq-length", "2048", "--recompute-granularity", "selective",
                 "--use-distributed-optimizer"]


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("estimate_memory_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_issue_command_json_as_a_script():
    out = subprocess.run([sys.executable, str(TOOL), *ISSUE_COMMAND, "--json"], capture_output=True, text=True,
                         check=True).stdout
    d = json.loads(out)
    assert d["params_total"] == 13_015_864_320
    assert d["params_per_rank"] == 1_628_328_960
    assert d["total"] == d["weights"] + d["gradients"] + d["optimizer"] + d["activations"]
    assert d["optimizer"] == -(-12 * d["params_per_rank"] // 4)
    assert d["recompute_granularity"] == "selective" and d["use_distributed_optimizer"] and d["bf16"]
    assert d["fits"] is True
    layouts = {(x["tensor_model_parallel_size"], x["data_parallel_size"]): x["fits"] for x in d["layouts"]}
    assert layouts == {(1, 32): False, (2, 16): True, (4, 8): True, (8, 4): True}


def test_text_report_names_the_breakdown_and_layouts(tool, capsys):
    assert tool.main(ISSUE_COMMAND + ["--recompute-granularity", "full", "--sequence-parallel"]) == 0
    out = capsys.readouterr().out
    for word in ("weights", "gradients", "optimizer", "activations", "total", "recompute full",
                 "sequence parallel on", "fits one 80 GiB GPU: yes", "32 GPUs as TP x DP"):
        assert word in out
    assert len([line for line in out.splitlines() if line.rstrip().endswith(("yes", "no"))]) == 5


def test_without_distributed_optimizer_fewer_layouts_fit(tool, capsys):
    assert tool.main(["--model", "llama-13b", "--tensor-model-parallel-size", "2", "--data-parallel-size", "16",
                      "--recompute-granularity", "selective", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["fits"] is False
    assert [x["fits"] for x in d["layouts"]] == [False, False, True, True]


def test_bad_layout_is_a_clear_error(tool, capsys):
    assert tool.main(["--model", "llama-13b", "--tensor-model-parallel-size", "3"]) == 2
    err = capsys.readouterr().err
    assert "--tensor-model-parallel-size 3 does not divide" in err
