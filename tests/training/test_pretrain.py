"""`python -m megapmc.pretrain` on the embedded sample data: the tiny model learns, --dry-run reports."""
import pytest
import torch

from megapmc import pretrain
from megapmc.data.preprocess import PreprocessConfig, preprocess
from megapmc.training.metrics_file import METRICS_NAME, read_metrics

SAMPLES = pretrain.__file__.rsplit("/", 1)[0] + "/sample_data/pretrain"


@pytest.fixture(scope="module")
def sample_shards(tmp_path_factory, spm_model):
    out = tmp_path_factory.mktemp("shards")
    prefixes = {}
    for source in ("books", "papers", "general"):
        preprocess(PreprocessConfig(input=f"{SAMPLES}/{source}.jsonl", output_prefix=str(out / source),
                                    tokenizer_model=str(spm_model), append_eod=True, progress=False))
        prefixes[source] = str(out / f"{source}_text_document")
    return prefixes


def _argv(shards, spm_model, *extra):
    return ["--model", "tiny", "--tokenizer-model", str(spm_model), "--seq-length", "64",
            "--micro-batch-size", "4", "--global-batch-size", "8",
            "--data-path", "15", shards["books"], "4", shards["papers"], "1", shards["general"],
            "--split", "80,20,0", "--num-workers", "0", "--lr", "3e-3", "--lr-warmup-iters", "3",
            "--log-interval", "10", "--eval-iters", "2", "--no-progress-bar", *extra]


@pytest.mark.slow
def test_tiny_model_loss_falls_on_sample_data(tmp_path, sample_shards, spm_model):
    torch.set_num_threads(1)  # tiny matmuls: extra threads only spin on a shared CPU
    save = tmp_path / "run"
    assert pretrain.main(_argv(sample_shards, spm_model, "--train-iters", "40", "--eval-interval", "20",
                               "--save", str(save))) == 0
    train, valid = read_metrics(save / METRICS_NAME)
    assert [r["iteration"] for r in train] == list(range(1, 41))
    first = sum(r["loss"] for r in train[:5]) / 5
    last = sum(r["loss"] for r in train[-5:]) / 5
    assert last < first - 1.0, (first, last)
    assert len(valid) == 2 and valid[1]["valid_loss"] < valid[0]["valid_loss"]
    assert (save / "iter_0000040" / "model_tp00.safetensors").is_file()


def test_dry_run_prints_config_plan_and_memory(sample_shards, spm_model, capsys):
    argv = _argv(sample_shards, spm_model, "--train-epochs", "2", "--world-size", "4",
                 "--tensor-model-parallel-size", "2", "--dry-run")
    assert pretrain.main(argv) == 0
    out = capsys.readouterr().out
    assert '"global_batch_size": 8' in out and '"tensor_model_parallel_size": 2' in out
    assert "4 processes = TP 2 x DP 2; 1 micro-batches of 4" in out
    assert "epoch = one pass over books (2 epochs)" in out
    assert "# memory estimate per GPU" in out


def test_a_missing_kernel_backend_named_on_the_command_line_is_one_line(tmp_path, sample_shards, spm_model, capsys):
    if torch.cuda.is_available():
        pytest.skip("flash-attn may be installed where CUDA is")
    argv = _argv(sample_shards, spm_model, "--train-iters", "4", "--attention-backend", "flash")
    assert pretrain.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("megapmc.pretrain: error: --attention-backend flash: flash needs a CUDA device")
