"""Fixtures for the instruction-tuning tests: the shipped sample files and a word-level tokenizer whose
token counts can be checked by hand."""
from pathlib import Path

import pytest

SAMPLE_SFT = Path(__file__).resolve().parents[2] / "megapmc" / "sample_data" / "sft"


class WordTokenizer:
    """One token per whitespace-separated word: ids are stable and every count is a word count."""

    bos_id, eos_id, pad_id = 1, 2, None

    def __init__(self, vocab_size: int = 4096):
        self.vocab_size = vocab_size
        self._ids: dict[str, int] = {}
        self._words: dict[int, str] = {}

    def encode(self, text: str) -> list[int]:
        out = []
        for word in text.split():
            if word not in self._ids:
                self._ids[word] = 3 + len(self._ids)
                if self._ids[word] >= self.vocab_size:
                    raise ValueError("WordTokenizer vocabulary exhausted")
                self._words[self._ids[word]] = word
            out.append(self._ids[word])
        return out

    def encode_batch(self, texts, num_threads: int = 1):
        return [self.encode(t) for t in texts]

    def decode(self, ids) -> str:
        return " ".join(self._words.get(int(i), f"<{int(i)}>") for i in ids)


@pytest.fixture
def word_tokenizer():
    return WordTokenizer()


@pytest.fixture(scope="session")
def sample_sft_dir():
    return SAMPLE_SFT


@pytest.fixture(scope="module")
def small_vocab_word_tokenizer():
    """A word tokenizer whose ids fit the ``tiny`` model preset (vocabulary 512)."""
    return WordTokenizer(vocab_size=512)


# Row 0 of the released MedC-I (release.json of axiong/pmc_llama_instructions, as the Hugging Face
# datasets server's first-rows endpoint shows it; quoted from its public data card).
_RELEASE_ROW_0 = {
    "output": "###Answer: OPTION D IS CORRECT.",
    "source": "medqa_train",
    "instruction": "You're a doctor, kindly address the medical queries according to the patient's account.\n"
                   "Answer with the best option directly.",
    "input": "###Question: A 23-year-old pregnant woman at 22 weeks gestation presents with burning upon urination. "
             "She states it started 1 day ago and has been worsening despite drinking more water and taking "
             "cranberry extract. She otherwise feels well and is followed by a doctor for her pregnancy. Her "
             "temperature is 97.7°F (36.5°C), blood pressure is 122/77 mmHg, pulse is 80/min, respirations are "
             "19/min, and oxygen saturation is 98% on room air. Physical exam is notable for an absence of "
             "costovertebral angle tenderness and a gravid uterus. Which of the following is the best treatment "
             "for this patient?\n###Options:\nA. Ampicillin\nB. Ceftriaxone\nC. Doxycycline\nD. Nitrofurantoin\n",
    "sample_id": 0,
}


@pytest.fixture
def release_row_0() -> dict:
    """Row 0 of the released MedC-I, as its data card quotes it (a fresh copy per test)."""
    return dict(_RELEASE_ROW_0)
