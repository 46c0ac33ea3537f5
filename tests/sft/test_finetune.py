"""``python -m megapmc.finetune``: the run length from epochs, flag errors, and a real run whose loss falls."""
import json
import math

import pytest

from megapmc import finetune
from megapmc.sft.build import BuildConfig, build_instruction_data
from megapmc.sft.preprocess import PreprocessConfig, preprocess_sft


@pytest.fixture(scope="module")
def sft_prefix(tmp_path_factory, spm_model, sample_sft_dir):
    from megapmc.data.tokenizer import build_tokenizer

    d = sample_sft_dir
    tmp = tmp_path_factory.mktemp("finetune")
    config = BuildConfig(conversations=[str(d / "conversations.json")], instruction_pool=str(d / "instruction_pool.json"),
                         medqa=[str(d / "medqa_train.jsonl")], medmcqa=[str(d / "medmcqa_train.json")],
                         umls_dir=str(d / "umls"))
    build_instruction_data(config, tmp / "medc_i.jsonl", progress=False)
    preprocess_sft(PreprocessConfig(str(tmp / "medc_i.jsonl"), str(tmp / "sft")), build_tokenizer(spm_model),
                   progress=False)
    return tmp / "sft"


def _args(prefix, spm_model, *extra):
    return ["--model", "tiny", "--tokenizer-model", str(spm_model), "--data-path", str(prefix),
            "--seq-length", "128", "--micro-batch-size", "2", "--global-batch-size", "4", "--lr", "3e-3",
            "--num-workers", "0", "--no-progress-bar", "--seed", "7", *extra]


def _config(prefix, spm_model, *extra):
    from megapmc.training.arguments import build_run_config, parse_args

    args = parse_args(finetune.build_parser(), _args(prefix, spm_model, *extra))
    return build_run_config(args, finetune.sft_data_config(args))


def test_train_epochs_count_samples_and_every_step_holds_the_global_batch(sft_prefix, spm_model):
    train, valid, iters = finetune.build_sft_datasets(_config(sft_prefix, spm_model, "--train-epochs", "2.5"), 2)
    samples = len(train.records)
    assert iters == math.ceil(2.5 * samples / 4) and train.num_steps >= iters
    assert valid is None
    for step in range(iters):
        first, last = train.step_rows(step)
        held = [len(train.row_samples(i)) for i in range(first, last)]
        assert sum(held) == 4  # exactly --global-batch-size samples, however they pack
        assert (last - first) % 2 == 0  # the same share of rows on both DP ranks
    stream = [int(s) for i in range(train.step_rows(0)[0], train.step_rows(iters - 1)[1]) for s in train.row_samples(i)]
    assert sorted(stream[:samples]) == sorted(train.records.tolist())  # the first epoch: every sample once
    train, valid, iters = finetune.build_sft_datasets(
        _config(sft_prefix, spm_model, "--train-iters", "5", "--valid-fraction", "0.2", "--eval-iters", "2"))
    assert iters == 5 and train.num_steps >= 5 and valid.num_steps >= 2
    assert set(train.records).isdisjoint(valid.records)
    assert len(train.records) + len(valid.records) == 12 + 5 + (5 + 3) + 13  # MedMCQA: exp gives rationale rows


def test_flag_errors_are_clear(tmp_path, spm_model, capsys):
    with pytest.raises(SystemExit):
        finetune.main(_args(tmp_path / "nothing", spm_model, "--train-iters", "1"))
    assert "tools/preprocess_sft.py" in capsys.readouterr().err


@pytest.mark.slow
def test_instruction_tuning_loss_falls_and_finetune_loads_weights(tmp_path, sft_prefix, spm_model):
    run = tmp_path / "run"
    assert finetune.main(_args(sft_prefix, spm_model, "--train-iters", "16", "--lr-warmup-iters", "2",
                               "--save", str(run), "--save-interval", "16", "--log-interval", "4")) == 0
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(losses) == 16
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < first - 0.8  # nats: from about 6.1 to under 5

    # --finetune: the weights of the run above, with a fresh iteration count and optimizer.
    tuned = tmp_path / "tuned"
    assert finetune.main(_args(sft_prefix, spm_model, "--train-iters", "2", "--load", str(run), "--finetune",
                               "--save", str(tuned), "--log-interval", "1")) == 0
    again = [json.loads(line) for line in (tuned / "metrics.jsonl").read_text().splitlines()]
    again = [m for m in again if "loss" in m]
    assert again[0]["iteration"] == 1
    assert again[0]["loss"] < losses[0] - 0.7  # starts from the tuned weights, not from scratch


@pytest.mark.slow
def test_resumed_instruction_tuning_equals_an_uninterrupted_run(tmp_path, sft_prefix, spm_model):
    def losses(run):
        return [m["loss"] for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in m]

    common = ("--train-iters", "6", "--log-interval", "1", "--save-interval", "3")
    whole = tmp_path / "whole"
    assert finetune.main(_args(sft_prefix, spm_model, *common, "--save", str(whole))) == 0
    parts = tmp_path / "parts"
    resumable = (*common, "--save", str(parts), "--load", str(parts))
    assert finetune.main(_args(sft_prefix, spm_model, *resumable, "--exit-interval", "3")) == 0
    assert len(losses(parts)) == 3
    assert finetune.main(_args(sft_prefix, spm_model, *resumable)) == 0
    assert losses(parts) == losses(whole)  # bit for bit: the same rows, in the same order, after the restart


def _finetune_rank(rank, world_size, argv):
    import torch

    torch.set_num_threads(1)
    assert finetune.main(argv) == 0


@pytest.mark.slow
@pytest.mark.distributed
def test_dp2_steps_consume_the_global_batch_and_the_loss_is_the_token_mean(tmp_path, sft_prefix, spm_model):
    """DP=2, micro-batches of one row, steps of 8 samples packed into a varying number of rows: every
    logged step consumed exactly 8 samples, and the first loss is the token mean over that step's
    response tokens, computed here directly from the initial weights."""
    import torch

    from megapmc.model.llama import build_model
    from megapmc.parallel.state import ParallelState
    from megapmc.testing.distributed import run_distributed

    flags = ["--micro-batch-size", "1", "--global-batch-size", "8", "--train-iters", "3", "--log-interval", "1",
             "--lr-warmup-iters", "1", "--seq-length", "512", "--max-position-embeddings", "512"]
    run_distributed(_finetune_rank, 2, _args(sft_prefix, spm_model, *flags, "--save", str(tmp_path / "dp2")))
    metrics = [m for m in map(json.loads, (tmp_path / "dp2" / "metrics.jsonl").read_text().splitlines()) if "loss" in m]
    assert [(m["samples"], m["consumed_samples"]) for m in metrics] == [(8, 8), (8, 16), (8, 24)]

    config = _config(sft_prefix, spm_model, *flags)
    train, _, _ = finetune.build_sft_datasets(config, data_parallel_size=2)
    first, last = train.step_rows(0)
    assert last - first < 8  # packed: fewer rows than samples, yet 8 samples consumed
    rows = [train[i] for i in range(first, last)]
    assert sum(int(r["num_samples"]) for r in rows) == 8
    model = build_model(config.model, ParallelState.single(), config.model_options, torch.device("cpu"),
                        torch.float32, seed=config.training.seed)
    loss_sum = count = 0.0
    with torch.no_grad():
        for r in rows:
            per_token = model(r["tokens"][None, :-1], position_ids=r["position_ids"][None],
                              segment_ids=r["segment_ids"][None], labels=r["tokens"][None, 1:])
            loss_sum += float((per_token[0] * r["loss_mask"]).sum())
            count += float(r["loss_mask"].sum())
    assert metrics[0]["loss"] == pytest.approx(loss_sum / count, rel=1e-5)


@pytest.mark.slow
@pytest.mark.distributed
def test_dp2_steps_at_the_papers_global_batch_of_256_samples(tmp_path, sft_prefix, spm_model):
    """The paper's batch of 256 as the run counts it: at DP=2 each logged step consumed 256 instruction
    samples (the fixture's records, reshuffled each epoch), packed into fewer rows of 512 tokens."""
    from megapmc.testing.distributed import run_distributed

    flags = ["--micro-batch-size", "4", "--global-batch-size", "256", "--train-iters", "2", "--log-interval", "1",
             "--lr-warmup-iters", "1", "--seq-length", "512", "--max-position-embeddings", "512"]
    run_distributed(_finetune_rank, 2, _args(sft_prefix, spm_model, *flags, "--save", str(tmp_path / "dp2")))
    metrics = [m for m in map(json.loads, (tmp_path / "dp2" / "metrics.jsonl").read_text().splitlines()) if "loss" in m]
    assert [(m["samples"], m["consumed_samples"]) for m in metrics] == [(256, 256), (256, 512)]

    train, _, _ = finetune.build_sft_datasets(_config(sft_prefix, spm_model, *flags), data_parallel_size=2)
    for step in range(2):
        first, last = train.step_rows(step)
        assert sum(len(train.row_samples(i)) for i in range(first, last)) == 256
        assert (last - first) % 2 == 0 and last - first < 256  # rows pack more than one sample
