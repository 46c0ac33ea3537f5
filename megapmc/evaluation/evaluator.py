"""Run the chosen tasks on one backend and write the report: what ``tools/evaluate.py`` calls."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from megapmc.benchmarks import files_for
from megapmc.evaluation.backends import CausalLMBackend, HFBackend, MegapmcBackend, load_tokenizer
from megapmc.evaluation.fewshot import FewShotSampler
from megapmc.evaluation.perplexity import perplexity, read_documents
from megapmc.evaluation.report import (
    TaskResult, render_markdown, summarise, write_lm_eval_results, write_report, write_samples,
)
from megapmc.evaluation.scoring import score_generate, score_loglik
from megapmc.evaluation.tasks import LoadedSplit, get_task

MODES = ("loglik", "generate")
DEFAULT_TASKS = ("pubmedqa", "medmcqa", "medqa")
DTYPES = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SAMPLE_DATA_DIR = str(Path(__file__).resolve().parents[1] / "sample_data" / "benchmarks")


@dataclass
class EvalConfig:
    data_dir: str
    output_dir: str
    tasks: tuple[str, ...] = DEFAULT_TASKS
    mode: str = "loglik"
    num_fewshot: int = 0
    limit: int | None = None
    max_new_tokens: int = 64
    seed: int = 1234
    medmcqa_cop_base: int | None = None  # None: detect from the file (0 in the HF copy, 1 in the original)
    task_files: dict[str, str] = field(default_factory=dict)  # task -> file named on the command line
    strict: bool = False  # stop at the first malformed record
    ppl_files: dict[str, str] = field(default_factory=dict)  # name -> held-out text file (forgetting check)

    def __post_init__(self):
        self.tasks = tuple(self.tasks)
        if not self.tasks:
            raise ValueError("--tasks is empty; name at least one of pubmedqa, medmcqa, medqa")
        for name in self.tasks:
            get_task(name)
        if self.mode not in MODES:
            raise ValueError(f"--mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.num_fewshot < 0:
            raise ValueError(f"--num-fewshot must be >= 0, got {self.num_fewshot}")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"--limit must be positive, got {self.limit}")
        if self.max_new_tokens <= 0:
            raise ValueError(f"--max-new-tokens must be positive, got {self.max_new_tokens}")
        if self.medmcqa_cop_base not in (None, 0, 1):
            raise ValueError(f"--medmcqa-cop-base must be 0 or 1, got {self.medmcqa_cop_base}")
        if not Path(self.data_dir).is_dir():
            raise FileNotFoundError(f"--data-dir {self.data_dir}: not a directory")
        for name, path in self.task_files.items():
            if not Path(path).is_file():
                raise FileNotFoundError(f"--{name.split('_')[0]}-file {path}: not found")
        for name, path in self.ppl_files.items():
            if not Path(path).is_file():
                raise FileNotFoundError(f"--ppl-files {name}={path}: not found")


def build_backend(hf_dir: str | None = None, load: str | None = None, tokenizer: str | None = None,
                  tensor_model_parallel_size: int = 1, batch_size: int = 8, dtype: str = "auto",
                  show_progress: bool = True) -> tuple[CausalLMBackend, bool]:
    """The backend for ``--hf-dir`` or ``--load``, and whether this process writes the outputs (rank 0)."""
    if (hf_dir is None) == (load is None):
        raise ValueError("give exactly one of --hf-dir (a Hugging Face directory) or --load (a megapmc checkpoint)")
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if batch_size <= 0:
        raise ValueError(f"--batch-size must be positive, got {batch_size}")
    tok = load_tokenizer(tokenizer) if tokenizer else None
    if hf_dir is not None:
        if tensor_model_parallel_size != 1:
            raise ValueError("--tensor-model-parallel-size applies to --load; a Hugging Face model runs on one device")
        backend = HFBackend.from_pretrained(hf_dir, batch_size=batch_size, dtype=DTYPES[dtype], tokenizer=tok,
                                            show_progress=show_progress)
        return backend, True
    from megapmc.parallel.state import initialize_parallel

    parallel = initialize_parallel(tensor_model_parallel_size)
    if parallel.dp_size != 1:
        raise ValueError(
            f"launch exactly --tensor-model-parallel-size ({parallel.tp_size}) processes; "
            f"{parallel.world_size} were started and evaluation has no data parallelism"
        )
    backend = MegapmcBackend.from_checkpoint(load, parallel, tokenizer=tok, batch_size=batch_size,
                                             dtype=DTYPES[dtype], show_progress=show_progress and parallel.rank == 0)
    return backend, parallel.rank == 0


@dataclass
class PreparedTask:
    """One task's items, read and validated before any model is loaded."""

    name: str
    split: LoadedSplit
    items: list
    train: list


def prepare_tasks(config: EvalConfig, log=print) -> list[PreparedTask]:
    """Find and read every task's files up front, so a missing or broken third file fails in seconds,
    not after hours of scoring the first two. ``log`` receives what was found."""
    prepared = []
    for name in config.tasks:
        task = get_task(name)
        kwargs = {"eval_file": config.task_files.get(name), "strict": config.strict}
        if name == "medmcqa":
            kwargs["cop_base"] = config.medmcqa_cop_base
        split = task.load(config.data_dir, "test", **kwargs)
        train = task.load(config.data_dir, "train", **kwargs).items if config.num_fewshot else []
        log(f"found {files_for(name, config.data_dir, config.task_files.get(name)).describe()}")
        log(f"{name}: {len(split.items)} items from {split.source} ({split.layout})"
            + (f", {len(split.malformed)} malformed skipped" if split.malformed else ""))
        for note in split.notes:
            log(f"  {note}")
        items = split.items[: config.limit] if config.limit else split.items
        prepared.append(PreparedTask(name, split, items, train))
    for name, path in config.ppl_files.items():  # read now, so a broken held-out file fails before scoring
        log(f"ppl {name}: {len(read_documents(path))} documents from {path}")
    return prepared


def evaluate(backend: CausalLMBackend, config: EvalConfig, write: bool = True,
             model_info: dict | None = None,
             prepared: list[PreparedTask] | None = None) -> tuple[list[TaskResult], dict]:
    """Score every task; with ``write`` (rank 0 only under torchrun) write the samples and the reports
    (``results.json``/``results.md`` and lm-eval's ``results_lm_eval.json``). ``model_info`` (what was
    evaluated: directory, dtype, TP size) goes into results.json; ``prepared`` is ``prepare_tasks``'s.
    Returns the task results and the held-out perplexities (``{name: {...}}``, empty without ppl files)."""
    prepared = prepared if prepared is not None else prepare_tasks(config, log=lambda _: None)
    results = []
    for p in prepared:
        task = get_task(p.name)
        fewshot = FewShotSampler(p.train, config.num_fewshot, config.seed)
        if config.mode == "loglik":
            item_results = score_loglik(backend, task, p.items, fewshot)
        else:
            item_results = score_generate(backend, task, p.items, fewshot, config.max_new_tokens)
        results.append(summarise(p.split, item_results, config.mode, config.num_fewshot))
        if write:
            Path(config.output_dir).mkdir(parents=True, exist_ok=True)
            write_samples(Path(config.output_dir), p.name, item_results)
    perplexities = {name: perplexity(backend, path) for name, path in config.ppl_files.items()}
    if write:
        run_config = {**dataclasses.asdict(config), "model": model_info or {}}
        write_report(config.output_dir, results, run_config, perplexities)
        write_lm_eval_results(config.output_dir, results, run_config)
    return results, perplexities


__all__ = ["EvalConfig", "PreparedTask", "build_backend", "evaluate", "prepare_tasks", "render_markdown", "MODES", "DEFAULT_TASKS"]
