"""megapmc checkpoints as an lm-evaluation-harness model: ``--model megapmc --model_args load=CKPT_DIR``.

Any harness task then runs on a native (TP-sharded) checkpoint without exporting it. lm-eval 0.4.x
finds models only in its registry (``lm_eval.api.registry.register_model``; it scans no entry-point
group), so the model is registered when this module is imported, and ``megapmc-lm-eval`` /
``python -m megapmc.evaluation.lm_eval_cli`` is ``lm_eval`` with it imported::

    megapmc-lm-eval --model megapmc --model_args load=RUN,batch_size=8 --tasks pubmedqa,medqa_4options
    torchrun --nproc-per-node 2 -m megapmc.evaluation.lm_eval_cli --model megapmc \\
        --model_args load=RUN,tensor_model_parallel_size=2 --tasks medmcqa

``model_args``: ``load`` (run or ``iter_XXXXXXX`` directory), ``tokenizer`` (default: the checkpoint's),
``tensor_model_parallel_size``, ``batch_size``, ``dtype`` (auto/fp32/bf16/fp16), ``max_length``.
Under torchrun every TP rank scores every request (there is no data parallelism) and the harness sees
``world_size`` 1; rank 0 alone reports (``rank`` is the process's).

``loglikelihood`` groups requests by context and scores each group from one prefilled context
(``MegapmcBackend.loglikelihood_grouped``); ``generate_until`` is greedy over the KV cache, cut at the
first stop string; ``loglikelihood_rolling`` scores lm-eval's disjoint rolling windows.
"""
from __future__ import annotations

from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from megapmc.evaluation.backends import CausalLMBackend


@register_model("megapmc")
class MegapmcLM(TemplateLM):
    def __init__(self, load: str | None = None, tokenizer: str | None = None, tensor_model_parallel_size: int = 1,
                 batch_size: int | str = 8, dtype: str = "auto", max_length: int | None = None,
                 backend: CausalLMBackend | None = None, **unused):
        """``backend`` (an already built one) is for tests and in-process use; otherwise ``load``."""
        super().__init__()
        if backend is None:
            import torch.distributed as dist

            from megapmc.evaluation.evaluator import build_backend

            if load is None:
                raise ValueError("--model megapmc needs --model_args load=CHECKPOINT_DIR")
            backend, _ = build_backend(load=load, tokenizer=tokenizer,
                                       tensor_model_parallel_size=int(tensor_model_parallel_size),
                                       batch_size=int(batch_size), dtype=dtype, show_progress=False)
            self._rank = dist.get_rank() if dist.is_initialized() else 0
        if max_length is not None:
            backend.max_length = int(max_length)
        # Not "self.backend": TemplateLM reads that as "causal" / "seq2seq".
        self.scorer = backend
        self._world_size = 1  # TP ranks all score every request; the harness must not split them

    @property
    def eot_token_id(self) -> int:
        return self.scorer.tokenizer.eos_id

    @property
    def prefix_token_id(self) -> int:
        return self.scorer.tokenizer.bos_id  # LLaMA scores after BOS, as HFLM with add_bos_token

    @property
    def max_length(self) -> int:
        return self.scorer.max_length

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        ids = self.scorer.tokenizer.encode(string)
        return ids if add_special_tokens is False else [self.prefix_token_id] + ids

    def tok_decode(self, tokens, **kwargs) -> str:
        return self.scorer.tokenizer.decode(tokens)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """``requests``: ``((context, continuation), context_ids, continuation_ids)``; the choices of one
        item share ``context_ids`` and are scored from one forward of it."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (_, ctx, _) in enumerate(requests):
            groups.setdefault(tuple(ctx), []).append(i)
        keys = list(groups)
        scored = self.scorer.loglikelihood_grouped([(list(k), [requests[i][2] for i in groups[k]]) for k in keys])
        out: list[tuple[float, bool] | None] = [None] * len(requests)
        for key, results in zip(keys, scored):
            for i, r in zip(groups[key], results):
                out[i] = (r.logprob, r.is_greedy)
                if requests[i][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], out[i])
        return out  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        out = []
        for (string,) in [req.args for req in requests]:
            # As HFLM: the token list keeps its BOS (scored after the BOS prefix token), so the totals agree.
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length, context_len=1)]
            total = sum(r.logprob for r in self.scorer.loglikelihood([(list(c), list(x)) for c, x in windows]))
            self.cache_hook.add_partial("loglikelihood_rolling", (string,), total)
            out.append(total)
        return out

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy; requests with the same ``max_gen_toks`` are decoded together in batches."""
        args = [req.args for req in requests]
        by_budget: dict[int, list[int]] = {}
        for i, (_, gen_kwargs) in enumerate(args):
            gen_kwargs = gen_kwargs or {}
            if gen_kwargs.get("do_sample") and gen_kwargs.get("temperature", 1.0) > 0:
                raise ValueError("--model megapmc decodes greedily; sampling (do_sample) is not supported")
            by_budget.setdefault(int(gen_kwargs.get("max_gen_toks", 256)), []).append(i)
        out: list[str | None] = [None] * len(args)
        for budget, indices in by_budget.items():
            generated = self.scorer.generate([self.tok_encode(args[i][0]) for i in indices], budget)
            for i, ids in zip(indices, generated):
                context, gen_kwargs = args[i]
                until = (gen_kwargs or {}).get("until") or []
                until = [until] if isinstance(until, str) else list(until)
                text = self.tok_decode(ids)
                cuts = [text.find(s) for s in until if s and s in text]
                out[i] = text[:min(cuts)] if cuts else text
                self.cache_hook.add_partial("generate_until", (context, gen_kwargs), out[i])
        return out  # type: ignore[return-value]
