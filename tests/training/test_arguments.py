"""Flags → RunConfig: Megatron's names, YAML with flags winning, and messages that say what to change."""
import pytest

from megapmc.pretrain import build_parser, data_config
from megapmc.training.arguments import build_run_config, parse_args

BASE = ["--model", "tiny", "--vocab-size", "512", "--seq-length", "64", "--micro-batch-size", "2",
        "--global-batch-size", "8", "--train-iters", "10", "--lr", "1e-3"]


def _config(argv, data=None):
    args = parse_args(build_parser(), argv)
    return build_run_config(args, data)


def test_flags_resolve_into_configs(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = _config(BASE + ["--tensor-model-parallel-size", "2", "--sequence-parallel", "--num-layers", "3",
                          "--recompute-granularity", "full", "--lr-decay-style", "linear", "--min-lr", "1e-4",
                          "--lr-warmup-fraction", "0.2", "--bf16", "--use-distributed-optimizer"])
    assert cfg.model.num_layers == 3 and cfg.model.hidden_size == 64  # preset + override
    assert cfg.tensor_model_parallel_size == 2 and cfg.model_options.sequence_parallel
    assert cfg.model_options.recompute_granularity == "full"
    assert cfg.optimizer.bf16 and cfg.optimizer.use_distributed_optimizer and cfg.training.bf16
    assert cfg.lr_schedule.resolve(cfg.training.train_iters).lr_warmup_iters == 2
    assert cfg.training.num_micro_batches(data_parallel_size=2) == 2
    d = cfg.to_dict()
    assert d["parallel"] == {"tensor_model_parallel_size": 2} and d["model"]["num_layers"] == 3


def test_yaml_config_with_flags_winning(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("lr: 0.5\nmin-lr: 0.0001\nglobal_batch_size: 16\nlr_decay_style: constant\n")
    cfg = _config(["--config", str(yaml_file)] + BASE)  # BASE gives --lr 1e-3 and --global-batch-size 8
    assert cfg.lr_schedule.lr == 1e-3 and cfg.training.global_batch_size == 8
    assert cfg.lr_schedule.min_lr == 0.0001 and cfg.lr_schedule.lr_decay_style == "constant"


def test_yaml_unknown_key_is_named(tmp_path, capsys):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("learning_rate: 0.1\n")
    with pytest.raises(SystemExit):
        parse_args(build_parser(), ["--config", str(yaml_file)] + BASE)
    assert f"--config {yaml_file}: unknown key 'learning_rate'" in capsys.readouterr().err


def test_recompute_overlap_and_backend_flags_reach_the_model_and_optimizer(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = _config(BASE + ["--num-layers", "4", "--recompute-granularity", "full", "--recompute-method", "block",
                          "--recompute-num-layers", "3", "--use-distributed-optimizer", "--overlap-param-gather",
                          "--attention-backend", "math", "--kernel-backend", "compile"])
    d = cfg.to_dict()  # what config.json and --dry-run show
    assert d["model_options"]["recompute_method"] == "block" and d["model_options"]["recompute_num_layers"] == 3
    assert d["optimizer"]["overlap_param_gather"] is True
    assert cfg.model_options.recompute_config.method == "block"
    from megapmc.model.llama import build_model

    model = build_model(cfg.model, options=cfg.model_options)
    # block: the first 3 of 4 layers are recomputed, one by one
    assert model._chunks == [(0, 1, True), (1, 2, True), (2, 3, True), (3, 4, False)]
    assert model.kernels.names["attention"] == "math" and model.kernels.names["rms_norm"] == "compile"
    defaults = _config(BASE + ["--recompute-granularity", "full"])
    assert defaults.model_options.recompute_method == "uniform" and defaults.model_options.recompute_num_layers == 1
    assert defaults.optimizer.overlap_param_gather is False


@pytest.mark.parametrize("argv, message", [
    (["--kernel-backend", "cudnn"], "argument --kernel-backend: invalid choice: 'cudnn'"),
    (["--attention-backend", "flash2"], "argument --attention-backend: invalid choice: 'flash2'"),
    (["--recompute-method", "every"], "argument --recompute-method: invalid choice: 'every'"),
])
def test_backend_and_recompute_choices_are_checked_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_args(build_parser(), BASE + argv)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("extra, world, message", [
    (["--global-batch-size", "7"], None, "--global-batch-size 7 is not a multiple of --micro-batch-size 2"),
    ([], "3", r"--global-batch-size 8 is not divisible by --micro-batch-size 2 × data-parallel size 3"),
    (["--tensor-model-parallel-size", "2"], "3", "--tensor-model-parallel-size 2 does not divide the 3"),
    (["--num-layers", "4", "--pipeline-model-parallel-size", "2", "--num-layers-per-virtual-pipeline-stage", "1",
      "--global-batch-size", "6"], "2", r"interleaved schedule .* micro-batches per DP rank \(3 = --global-batch-size"),
    (["--tensor-model-parallel-size", "3"], None, "--tensor-model-parallel-size 3 does not divide num_attention_heads"),
    (["--sequence-parallel"], None, "--sequence-parallel .* needs --tensor-model-parallel-size > 1"),
    (["--train-epochs", "2"], None, "exactly one of --train-iters and --train-epochs"),
    (["--lr-warmup-iters", "20", "--lr-decay-iters", "5"], None, "--lr-decay-iters 5 is shorter than the warmup"),
    (["--seq-length", "1024"], None, "--seq-length 1024 exceeds the model's max_position_embeddings 256"),
    (["--save-interval", "5"], None, "--save-interval needs --save"),
    (["--finetune"], None, "--finetune loads weights from --load"),
    (["--ckpt-step", "4"], None, "--ckpt-step N resumes iteration N of --load DIR"),
    (["--overlap-param-gather"], None, "--overlap-param-gather needs --use-distributed-optimizer"),
    (["--recompute-method", "block"], None, "--recompute-method .* need --recompute-granularity full"),
    (["--recompute-granularity", "selective", "--recompute-num-layers", "2"], None, "need --recompute-granularity full"),
    (["--recompute-granularity", "full", "--recompute-num-layers", "0"], None, "--recompute-num-layers must be >= 1"),
    (["--lr-decay-style", "cosine", "--min-lr", "1"], None, "--min-lr"),
])
def test_bad_combinations_say_what_to_change(extra, world, message, monkeypatch):
    if world is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", world)
    with pytest.raises(ValueError, match=message):
        _config(BASE + extra)


def test_missing_lr_and_unknown_preset(monkeypatch, capsys):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    argv = [a for a in BASE if a not in ("--lr", "1e-3")]
    with pytest.raises(ValueError, match="--lr is required"):
        _config(argv)
    with pytest.raises(SystemExit):
        parse_args(build_parser(), ["--model", "llama-99b"])
    assert "invalid choice: 'llama-99b'" in capsys.readouterr().err


def test_missing_data_is_named(tmp_path):
    args = parse_args(build_parser(), BASE + ["--data-path", "15", str(tmp_path / "books_text_document"),
                                              "1", str(tmp_path / "general_text_document")])
    with pytest.raises(FileNotFoundError, match=r"source 'books': .*books_text_document.bin.* tools/preprocess_data.py"):
        data_config(args)
    args = parse_args(build_parser(), BASE)
    with pytest.raises(ValueError, match="--data-path is required"):
        data_config(args)


def test_resume_flags_reach_the_checkpoint_config(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = _config(BASE + ["--load", "run", "--ckpt-step", "4", "--fallback-to-intact-checkpoint",
                          "--verify-checkpoint", "metadata"])
    assert (cfg.checkpoint.ckpt_step, cfg.checkpoint.fallback_to_intact_checkpoint,
            cfg.checkpoint.verify_checkpoint) == (4, True, "metadata")
    assert _config(BASE).checkpoint.verify_checkpoint == "full"
