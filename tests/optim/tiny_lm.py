"""The small language model the optimizer tests train (shared by the single- and multi-process tests)."""
import torch
import torch.nn.functional as F
from torch import nn


class TinyLM(nn.Module):
    """Embedding, a 1-D norm-like weight (not decayed), two matrices: enough to exercise every path."""

    def __init__(self, vocab=32, hidden=16, ffn=48):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.norm_weight = nn.Parameter(torch.ones(hidden))
        self.up = nn.Linear(hidden, ffn, bias=False)
        self.down = nn.Linear(ffn, vocab, bias=False)

    def forward(self, tokens, labels):
        x = self.embed(tokens) * self.norm_weight  # [b, s, h]
        logits = self.down(torch.tanh(self.up(x)))  # [b, s, V]
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), reduction="none").view(labels.shape)
