"""Small generated fixtures: medical-flavoured text and a SentencePiece model trained on it in seconds."""
from __future__ import annotations

import random
from pathlib import Path

_SUBJECTS = [
    "the patient", "hypertension", "insulin resistance", "the left ventricle", "sepsis", "the liver",
    "chronic kidney disease", "asthma", "the randomized trial", "metformin", "the tumour", "pneumonia",
    "atrial fibrillation", "the cohort", "vitamin D deficiency", "the enzyme", "myocardial infarction",
]
_VERBS = [
    "is associated with", "increases", "reduces", "was measured in", "predicts", "is treated with",
    "presents with", "is caused by", "improves", "was compared with",
]
_OBJECTS = [
    "mortality", "blood pressure", "serum creatinine", "a fever of 39 degrees", "beta blockers",
    "oxygen saturation", "the control group", "glucose tolerance", "inflammation", "chest pain",
    "antibiotic therapy", "renal function", "cardiac output", "the placebo arm", "weight loss",
]


def medical_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` deterministic, vaguely clinical sentences."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
        if rng.random() < 0.4:
            s += f" in {rng.randint(2, 900)} adults"
        out.append(s[0].upper() + s[1:] + ".")
    return out


def train_sentencepiece(out_dir: str | Path, vocab_size: int = 512, seed: int = 0) -> Path:
    """Train a LLaMA-like SentencePiece BPE model (unk 0, bos 1, eos 2, byte fallback); return its path."""
    import sentencepiece as spm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = out_dir / "spm_corpus.txt"
    corpus.write_text("\n".join(medical_sentences(3000, seed)) + "\n")
    prefix = out_dir / "tokenizer"
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type="bpe",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        byte_fallback=True,
        character_coverage=1.0,
        # As LLaMA's tokenizer: no NFKC, newlines and repeated spaces kept (see tools/train_tokenizer.py).
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        num_threads=1,
        minloglevel=2,
    )
    return prefix.with_suffix(".model")
