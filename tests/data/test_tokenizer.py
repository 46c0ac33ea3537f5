"""Tokenizer backends: SentencePiece and Hugging Face tokenizer.json behind one interface."""
import json
import shutil

import numpy as np
import pytest

from megapmc.data.tokenizer import HuggingFaceTokenizer, SentencePieceTokenizer, build_tokenizer
from megapmc.testing.fixtures import medical_sentences


@pytest.fixture(scope="module")
def hf_dir(spm_model, tmp_path_factory):
    """The session's SentencePiece model converted to a Hugging Face tokenizer.json by transformers."""
    from transformers import LlamaTokenizer

    src = tmp_path_factory.mktemp("spm_src")
    shutil.copy(spm_model, src / "tokenizer.model")
    out = tmp_path_factory.mktemp("hf")
    LlamaTokenizer.from_pretrained(str(src)).save_pretrained(str(out))
    return out


def test_sentencepiece_ids(spm_model):
    tok = build_tokenizer(spm_model)
    assert isinstance(tok, SentencePieceTokenizer)
    assert (tok.bos_id, tok.eos_id, tok.eod, tok.pad_id, tok.vocab_size) == (1, 2, 2, None, 512)
    ids = tok.encode("The patient presents with chest pain.")
    assert ids and tok.bos_id not in ids and tok.eos_id not in ids, "encode must not add BOS/EOS"
    assert tok.decode(ids) == "The patient presents with chest pain."


@pytest.mark.parametrize("threads", [1, 2])
def test_batch_encoding_matches_single(spm_model, threads):
    tok = build_tokenizer(spm_model)
    texts = medical_sentences(50, seed=3) + [""]
    single = [tok.encode(t) for t in texts]
    assert tok.encode_batch(texts, num_threads=threads) == single
    tokens, lengths = tok.encode_batch_flat(texts, num_threads=threads)
    assert tokens.dtype == np.int64 and lengths.tolist() == [len(s) for s in single]
    assert tokens.tolist() == [i for s in single for i in s]


def test_flat_encoding_without_numpy_output(spm_model):
    """The list-based fallback (older sentencepiece) gives the same arrays."""
    tok = build_tokenizer(spm_model)
    texts = medical_sentences(20, seed=4)
    want = tok.encode_batch_flat(texts)
    tok._numpy_out = False
    got = tok.encode_batch_flat(texts)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_hf_backend_agrees_with_sentencepiece(spm_model, hf_dir):
    sp, hf = build_tokenizer(spm_model), build_tokenizer(hf_dir)
    assert isinstance(hf, HuggingFaceTokenizer)
    assert (hf.bos_id, hf.eos_id, hf.vocab_size) == (1, 2, 512)
    texts = medical_sentences(100, seed=7)
    assert hf.encode_batch(texts) == sp.encode_batch(texts)
    ids = hf.encode(texts[0])
    assert hf.decode(ids) == texts[0]
    tokens, lengths = hf.encode_batch_flat(texts[:5])
    assert lengths.tolist() == [len(hf.encode(t)) for t in texts[:5]]


def test_hf_added_tokens_count_in_vocab(hf_dir, tmp_path):
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
    tok.add_special_tokens([AddedToken("[PAD]", special=True)])
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"pad_token": {"content": "[PAD]"},
                                                                "eos_token": "</s>"}))
    hf = build_tokenizer(tmp_path)
    assert hf.vocab_size == 513 and hf.pad_id == 512 and hf.eos_id == 2


def test_hf_trained_from_scratch_finds_endoftext(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<|endoftext|>"], show_progress=False)
    tok.train_from_iterator(medical_sentences(500), trainer)
    tok.save(str(tmp_path / "tok.json"))
    hf = build_tokenizer(tmp_path / "tok.json")
    assert hf.eos_id == 1 and hf.bos_id is None
    text = "Sepsis reduces renal function."
    assert hf.encode_batch([text, text]) == [hf.encode(text)] * 2


def test_build_tokenizer_dispatch_and_errors(spm_model, tmp_path):
    d = tmp_path / "only_model"
    d.mkdir()
    shutil.copy(spm_model, d / "tokenizer.model")
    assert isinstance(build_tokenizer(d), SentencePieceTokenizer)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither tokenizer.json nor tokenizer.model"):
        build_tokenizer(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_tokenizer(tmp_path / "missing.model")
    (tmp_path / "garbage.model").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="garbage.model"):
        build_tokenizer(tmp_path / "garbage.model")
    (tmp_path / "garbage.json").write_text("{}")
    with pytest.raises(ValueError, match="garbage.json"):
        build_tokenizer(tmp_path / "garbage.json")
