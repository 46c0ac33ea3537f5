"""Meta's interleaved rotary on its rows equals Hugging Face's rotate-half on the permuted rows."""
import pytest
import torch

from megapmc.convert.rotary_layout import hf_to_meta_rows, meta_to_hf_rows


def _meta_rope(x, theta=10000.0):
    """Meta model.py: pairs (2j, 2j+1) rotated as complex numbers. x: [s, heads, d]."""
    s, _, d = x.shape
    freqs = 1.0 / theta ** (torch.arange(0, d, 2).float() / d)
    rot = torch.polar(torch.ones(s, d // 2), torch.outer(torch.arange(s).float(), freqs))
    return torch.view_as_real(torch.view_as_complex(x.reshape(s, -1, d // 2, 2)) * rot[:, None]).flatten(2)


def _hf_rope(x, theta=10000.0):
    """transformers: pairs (j, j + d/2), rotate_half. x: [s, heads, d]."""
    s, _, d = x.shape
    freqs = 1.0 / theta ** (torch.arange(0, d, 2).float() / d)
    angles = torch.outer(torch.arange(s).float(), freqs).repeat(1, 2)[:, None]  # [s, 1, d]
    rotated = torch.cat([-x[..., d // 2:], x[..., : d // 2]], dim=-1)
    return x * angles.cos() + rotated * angles.sin()


@pytest.mark.parametrize("heads", [1, 2, 4])  # with GQA, wk passes the KV head count
def test_permutation_maps_meta_rotary_to_hf_rotary(heads):
    d, h, s = 8, 16, 5
    w_meta = torch.randn(heads * d, h)
    x = torch.randn(s, h)
    meta = _meta_rope((x @ w_meta.T).view(s, heads, d))
    hf = _hf_rope((x @ meta_to_hf_rows(w_meta, heads).T).view(s, heads, d))
    # The rotated vectors are the same, laid out by the same permutation as the rows ...
    torch.testing.assert_close(hf.reshape(s, heads * d), meta_to_hf_rows(meta.reshape(s, heads * d).T, heads).T)
    # ... so attention scores agree.
    torch.testing.assert_close(torch.einsum("qhd,khd->hqk", meta, meta), torch.einsum("qhd,khd->hqk", hf, hf))
    assert not torch.allclose(_hf_rope((x @ w_meta.T).view(s, heads, d)).flatten(1), hf.flatten(1))


def test_inverse_round_trip_and_error():
    w = torch.randn(3 * 8, 5)
    assert torch.equal(hf_to_meta_rows(meta_to_hf_rows(w, 3), 3), w)
    assert not torch.equal(meta_to_hf_rows(w, 3), w)
    with pytest.raises(ValueError, match="heads"):
        meta_to_hf_rows(torch.randn(10, 4), 4)
