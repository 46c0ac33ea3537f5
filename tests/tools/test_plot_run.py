"""tools/plot_run.py draws a PNG from metrics.jsonl (restarts included) or from TensorBoard logs."""
import importlib.util
import json
from pathlib import Path

import pytest

from megapmc.training.config import LoggingConfig
from megapmc.training.logging import IterationStats, TrainingLogger
from megapmc.training.metrics_file import METRICS_NAME, read_metrics

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _log_run(save_dir: Path, tb_dir: Path, iterations, start=0):
    logger = TrainingLogger(LoggingConfig(log_interval=2, tensorboard_dir=str(tb_dir), progress_bar=False),
                            enabled=True, save_dir=str(save_dir), train_iters=10, start_iteration=start,
                            world_size=1, flops_per_token=1e6, peak_tflops=None)
    for it in iterations:
        logger.log_iteration(IterationStats(it, 4 * it, loss=10.0 / it, lr=1e-3, grad_norm=1.0, skipped=False,
                                            num_tokens=256, elapsed_s=0.1))
        if it % 5 == 0:
            logger.log_validation(it, 9.0 / it)
    logger.close()


_spec = importlib.util.spec_from_file_location("plot_run", ROOT / "tools/plot_run.py")
plot_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plot_run)


def _plot(capsys, *args) -> tuple[int, str, str]:
    try:
        code = plot_run.main(list(args))
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_metrics_jsonl_with_a_restart(tmp_path, capsys):
    run, tb = tmp_path / "run", tmp_path / "tb"
    _log_run(run, tb, range(1, 8))
    with open(run / METRICS_NAME, "a") as f:
        f.write('{"iteration": 8, "lo')  # a record cut short by a kill
    _log_run(run, tb, range(6, 11), start=5)  # resumed from the checkpoint at 5: 6 and 7 come again
    train, valid = read_metrics(run / METRICS_NAME)
    assert [r["iteration"] for r in train] == list(range(1, 11))
    assert [r["iteration"] for r in valid] == [5, 10]
    code, out, err = _plot(capsys, str(run))
    assert code == 0, err
    assert "10 iterations, 2 validation points" in out
    assert (run / "run.png").read_bytes()[:8] == PNG_MAGIC


def test_tensorboard_logs(tmp_path, capsys):
    _log_run(tmp_path / "run", tmp_path / "tb", range(1, 11))
    out = tmp_path / "plots" / "tb.png"
    code, stdout, err = _plot(capsys, "--tensorboard", str(tmp_path / "tb"), "--output", str(out))
    assert code == 0, err
    assert "10 iterations, 2 validation points" in stdout and out.read_bytes()[:8] == PNG_MAGIC


def test_exact_loss_in_metrics(tmp_path):
    _log_run(tmp_path, tmp_path / "tb", [3])
    record = json.loads((tmp_path / METRICS_NAME).read_text().splitlines()[1])
    assert record["loss"] == 10.0 / 3  # repr round-trips the float exactly


@pytest.mark.parametrize("args, message", [
    (["/nonexistent/run"], "/nonexistent/run: not found; give the run"),
    ([], "give a run directory"),
])
def test_bad_inputs(args, message, capsys):
    code, _, err = _plot(capsys, *args)
    assert code == 2 and message in err
