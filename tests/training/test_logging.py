"""The console line, metrics.jsonl and TensorBoard scalars of a run."""
import io
import re

import pytest

from megapmc.training.config import LoggingConfig
from megapmc.training.logging import IterationStats, TrainingLogger
from megapmc.training.metrics_file import METRICS_NAME, read_metrics, read_tensorboard


def test_console_line_metrics_and_tensorboard(tmp_path, capsys):
    logger = TrainingLogger(LoggingConfig(log_interval=2, tensorboard_dir=str(tmp_path / "tb"), progress_bar=False),
                            enabled=True, save_dir=str(tmp_path), train_iters=4, start_iteration=0, world_size=2,
                            flops_per_token=1e9, peak_tflops=2.0)
    for it, skipped in ((1, False), (2, True)):
        logger.log_iteration(IterationStats(it, 8 * it, loss=3.0 + it, lr=1e-4, grad_norm=0.5, skipped=skipped,
                                            num_tokens=1000, elapsed_s=0.5))
    logger.log_validation(2, 2.5)
    logger.close()
    line = capsys.readouterr().out.splitlines()[0]
    for part in ("iteration        2", "consumed samples           16", "lr 1.0000e-04", "loss 4.500000",
                 "grad norm 0.5000", "skipped 1", "tokens/s 2000.0", "TFLOP/s/device 1.00", "MFU 50.0%", "GiB"):
        assert part in line, (part, line)
    train, valid = read_metrics(tmp_path / METRICS_NAME)
    assert [r["loss"] for r in train] == [4.0, 5.0] and train[1]["skipped"] is True
    assert train[0]["tflops_per_device"] == pytest.approx(1.0) and train[0]["mfu"] == pytest.approx(0.5)
    assert valid[0]["valid_loss"] == 2.5
    tb_train, tb_valid = read_tensorboard(tmp_path / "tb")
    assert [r["loss"] for r in tb_train] == [4.0, 5.0] and tb_train[1]["tokens_per_s"] == pytest.approx(2000.0)
    assert tb_valid == [{"iteration": 2, "valid_loss": 2.5}]


def test_other_ranks_write_nothing(tmp_path):
    logger = TrainingLogger(LoggingConfig(tensorboard_dir=str(tmp_path / "tb")), enabled=False,
                            save_dir=str(tmp_path / "run"), train_iters=1, start_iteration=0, world_size=2,
                            flops_per_token=1.0, peak_tflops=None)
    logger.log_iteration(IterationStats(1, 1, 1.0, 1.0, 1.0, False, 1, 1.0))
    logger.close()
    assert not (tmp_path / "run").exists() and not (tmp_path / "tb").exists()


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _log_four_iterations(stream, **config):
    logger = TrainingLogger(LoggingConfig(log_interval=2, **config), enabled=True, save_dir=None, train_iters=4,
                            start_iteration=0, world_size=1, flops_per_token=1.0, peak_tflops=None, stream=stream)
    for it in range(1, 5):
        logger.log_iteration(IterationStats(it, it, loss=2.0, lr=1e-4, grad_norm=0.5, skipped=False,
                                            num_tokens=10, elapsed_s=0.1))
    logger.print("saved checkpoint iter_0000004")
    logger.close()
    return stream.getvalue()


def test_on_a_terminal_lines_are_written_through_the_bar():
    out = _log_four_iterations(_Terminal())
    assert "train:" in out and "\r" in out, "a tqdm bar was drawn"
    # Every log line stands whole between the bar's carriage returns: tqdm cleared the bar before it.
    segments = [seg.strip() for seg in re.split(r"[\r\n]", out)]
    lines = [seg for seg in segments if seg.startswith("iteration")]
    assert len(lines) == 2 and all(line.endswith("GiB") for line in lines), segments
    assert "saved checkpoint iter_0000004" in segments


def test_not_a_terminal_gets_plain_progress_lines_and_no_bar():
    out = _log_four_iterations(io.StringIO(), progress_interval_s=0.0)
    assert "\r" not in out and "\x1b" not in out, "no bar fragments in a file"
    lines = out.splitlines()
    progress = [line for line in lines if line.startswith("train: ")]
    assert [line.split(" iterations")[0] for line in progress] == [f"train: {i}/4" for i in range(1, 5)]
    assert "(100.0%)" in progress[-1] and "eta 0:00:00" in progress[-1]
    assert sum(line.startswith("iteration") for line in lines) == 2
    assert lines[-1] == "saved checkpoint iter_0000004"


def test_plain_progress_is_periodic_not_per_iteration():
    out = _log_four_iterations(io.StringIO(), progress_interval_s=3600.0)
    progress = [line for line in out.splitlines() if line.startswith("train: ")]
    assert len(progress) == 1 and progress[0].startswith("train: 4/4 "), "only the final line"


def test_no_progress_bar_means_no_progress_lines():
    out = _log_four_iterations(io.StringIO(), progress_bar=False)
    assert "train:" not in out and sum(line.startswith("iteration") for line in out.splitlines()) == 2
