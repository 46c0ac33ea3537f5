"""A backend that answers from a script, for tests of generation scoring and reports without a model.

(A helper module, imported by its own name: pytest puts this directory on ``sys.path``.)
"""
from megapmc.evaluation.backends import CausalLMBackend


class CharTokenizer:
    bos_id, eos_id = 1, 2

    def encode(self, text):
        return [ord(c) + 3 for c in text]

    def decode(self, ids):
        return "".join(chr(i - 3) for i in ids)


class ScriptedBackend(CausalLMBackend):
    """Answers the i-th prompt with ``answers[i % len(answers)]``; checks each prompt starts with BOS."""

    def __init__(self, answers, max_length=100_000):
        self.tokenizer, self.answers, self.calls, self.max_length = CharTokenizer(), answers, 0, max_length

    def generate(self, prompts, max_new_tokens):
        assert all(p[0] == CharTokenizer.bos_id for p in prompts)
        out = []
        for _ in prompts:
            out.append(self.tokenizer.encode(self.answers[self.calls % len(self.answers)])[:max_new_tokens])
            self.calls += 1
        return out
