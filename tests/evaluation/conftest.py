import shutil
from pathlib import Path

import pytest
import torch

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "megapmc" / "sample_data" / "benchmarks"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory, spm_model) -> Path:
    """A random tiny ``LlamaForCausalLM`` saved with the session's SentencePiece tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny_hf")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    # A larger init spreads the logits, so option scores differ clearly (no near-ties to flip).
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.2)
    model.save_pretrained(out)
    shutil.copy(spm_model, out / "tokenizer.model")
    return out
