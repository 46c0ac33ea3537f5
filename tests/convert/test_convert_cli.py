"""tools/convert_checkpoint.py: flags in, files out, errors as one line on stderr and exit status 1."""
import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "convert_checkpoint.py"


@pytest.fixture(scope="module")
def cli():
    spec = importlib.util.spec_from_file_location("convert_checkpoint", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_hf_to_megapmc_tp2_and_back_with_verify(cli, hf_gqa, tmp_path, capsys):
    _, hf_dir = hf_gqa
    assert cli.main(["--loader", "hf", "--saver", "megapmc", "--load-dir", str(hf_dir), "--save-dir",
                     str(tmp_path / "tp2"), "--target-tensor-parallel-size", "2", "--verify"]) == 0
    assert cli.main(["--loader", "megapmc", "--saver", "hf", "--load-dir", str(tmp_path / "tp2" / "iter_0000000"),
                     "--save-dir", str(tmp_path / "hf"), "--dtype", "fp16", "--verify"]) == 0
    out = capsys.readouterr().out
    assert out.count("verify: largest |logits difference|") == 2 and "FAILED" not in out
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()


def test_error_is_one_line_and_exit_status_1(cli, tmp_path, capsys):
    (tmp_path / "src").mkdir()
    assert cli.main(["--loader", "hf", "--saver", "hf", "--load-dir", str(tmp_path / "src"),
                     "--save-dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("convert_checkpoint: error:") and "no config.json" in err


def test_pipeline_flags_reach_the_converter(cli, tmp_path):
    (tmp_path / "src").mkdir()
    cfg = cli.parse_args(["--loader", "hf", "--saver", "megapmc", "--load-dir", str(tmp_path / "src"), "--save-dir",
                          str(tmp_path / "out"), "--target-pipeline-parallel-size", "4",
                          "--decoder-first-pipeline-num-layers", "9", "--decoder-last-pipeline-num-layers", "7"])
    assert cfg.pipeline.stage_layers(40) == [[range(0, 9)], [range(9, 21)], [range(21, 33)], [range(33, 40)]]
