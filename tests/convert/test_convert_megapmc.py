"""megapmc checkpoints: TP=2 logits under gloo, resharding, run-directory resolution, and a trained
checkpoint exported to transformers' generate()."""
import pytest
import torch
from convert_fixtures import logits_of, random_ids

from megapmc.checkpoint import model_io
from megapmc.convert import ConvertConfig, convert, export_to_hf, import_from_hf, load_megapmc, reshard
from megapmc.convert.megapmc_format import resolve_checkpoint_dir
from megapmc.model import LlamaConfig, build_model
from megapmc.parallel import initialize_parallel
from megapmc.testing.distributed import run_distributed


def _tp_logits(rank, world_size, ckpt_dir, ids, expected):
    parallel = initialize_parallel(world_size)
    ckpt = resolve_checkpoint_dir(ckpt_dir)
    config = LlamaConfig.from_dict(model_io.load_config(ckpt)["model"])
    model = build_model(config, parallel, seed=None).eval()
    model.load_state_dict(model_io.load_model_shard(ckpt, parallel.tp_rank), strict=True)
    with torch.no_grad():
        logits = model.gather_logits(model(ids))
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-4)


@pytest.mark.slow
@pytest.mark.distributed
def test_hf_to_megapmc_tp2_logits_match_transformers(hf_gqa, tmp_path):
    hf_model, hf_dir = hf_gqa
    out = import_from_hf(hf_dir, tmp_path / "tp2", tp=2)
    ids = random_ids(500)
    run_distributed(_tp_logits, 2, str(out), ids, logits_of(hf_model, ids))


def test_streaming_reshard_tp2_to_tp1_equals_direct_conversion(hf_gqa, tmp_path):
    _, hf_dir = hf_gqa
    import_from_hf(hf_dir, tmp_path / "tp2", tp=2)
    import_from_hf(hf_dir, tmp_path / "direct", tp=1)
    convert(ConvertConfig("megapmc", "megapmc", tmp_path / "tp2", tmp_path / "tp1", progress=False))
    direct = model_io.load_model_shard(resolve_checkpoint_dir(tmp_path / "direct"), 0)
    resharded = model_io.load_model_shard(resolve_checkpoint_dir(tmp_path / "tp1"), 0)
    assert direct.keys() == resharded.keys()
    assert all(torch.equal(direct[n], resharded[n]) for n in direct)
    # the in-memory API agrees with the streaming one
    config, shards = load_megapmc(tmp_path / "tp2")
    assert all(torch.equal(reshard(shards, config, 1)[0][n], direct[n]) for n in direct)
    _, (loaded,) = load_megapmc(tmp_path / "tp2", tensor_model_parallel_size=1)
    assert all(torch.equal(loaded[n], direct[n]) for n in direct)


@pytest.mark.slow
def test_trained_checkpoint_exports_and_generates(spm_model, tmp_path):
    """A model trained a few SGD steps at TP=1, saved as a megapmc checkpoint (iteration 3), exported
    from a TP=2 reshard with --verify, runs transformers' generate() and gives the same logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = LlamaConfig.from_name("tiny")  # vocab 512 = the SentencePiece fixture's
    model = build_model(config, seed=7)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ids = random_ids(config.vocab_size, shape=(4, 17))
    losses = []
    for _ in range(3):
        loss = model(ids[:, :-1], labels=ids[:, 1:]).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    run = tmp_path / "run"
    model_io.save_model_shards(run / "iter_0000003", [model.state_dict()],
                               {"model": config.to_dict(), "tokenizer": {"tokenizer_model": str(spm_model)}})
    (run / "latest_checkpointed_iteration.txt").write_text("3")

    convert(ConvertConfig("megapmc", "megapmc", run, tmp_path / "tp2", target_tensor_parallel_size=2, progress=False))
    export_to_hf(tmp_path / "tp2", tmp_path / "hf", dtype="fp32", verify=True)  # tokenizer from the config
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    prompt = tokenizer("The patient presents with", return_tensors="pt")
    out = hf.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert out.shape == (1, prompt["input_ids"].shape[1] + 5)
    with torch.no_grad():
        torch.testing.assert_close(logits_of(hf, ids), model.gather_logits(model(ids)), rtol=0, atol=1e-4)
