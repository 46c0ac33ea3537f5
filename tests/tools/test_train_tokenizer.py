import json
import subprocess
import sys
from pathlib import Path

import sentencepiece as spm

from megapmc.convert.hf import write_hf_tokenizer
from megapmc.model.config import LlamaConfig
from megapmc.sft.template import build_prompt
from megapmc.testing.fixtures import medical_sentences

REPO = Path(__file__).resolve().parents[2]


def _train(tmp_path, lines):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in lines) + "{not json\n")
    out = subprocess.run(
        [sys.executable, "tools/train_tokenizer.py", "--input", str(corpus), "--vocab-size", "400",
         "--output-prefix", str(tmp_path / "tok" / "tokenizer")],
        cwd=REPO, capture_output=True, text=True,
    )
    return out, tmp_path / "tok" / "tokenizer.model"


def test_llama_like_ids_and_whitespace_kept(tmp_path):
    out, model = _train(tmp_path, medical_sentences(400))
    assert out.returncode == 0, out.stderr
    sp = spm.SentencePieceProcessor(model_file=str(model))
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.vocab_size()) == (0, 1, 2, 400)
    text = "Question:\nIs  sepsis\n\ntreated?"
    assert sp.decode(sp.encode(text)) == text  # no normalisation: newlines and double spaces survive


def test_exported_hf_tokenizer_encodes_prompts_identically(tmp_path):
    import transformers

    _, model = _train(tmp_path, medical_sentences(400))
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    write_hf_tokenizer(hf_dir, model, LlamaConfig.from_name("tiny", vocab_size=400), [])
    hf = transformers.AutoTokenizer.from_pretrained(hf_dir)
    sp = spm.SentencePieceProcessor(model_file=str(model))
    prompt = build_prompt("Answer the question.", "###Question: Is  metformin used?\n###Options:\nA. yes\nB. no")
    assert hf(prompt)["input_ids"] == [sp.bos_id()] + sp.encode(prompt)


def test_no_text_is_an_error(tmp_path):
    corpus = tmp_path / "empty.jsonl"
    corpus.write_text(json.dumps({"body": "x"}) + "\n")
    out = subprocess.run(
        [sys.executable, "tools/train_tokenizer.py", "--input", str(corpus), "--output-prefix", str(tmp_path / "t")],
        cwd=REPO, capture_output=True, text=True,
    )
    assert out.returncode == 2 and "no 'text' text found" in out.stderr
