"""The benchmark files (MedQA-USMLE, MedMCQA, PubMedQA) in every layout people download them in: one
reader per benchmark, shared by the evaluator (``megapmc.evaluation``) and the instruction-data builders
(``megapmc.sft.sources``), so a format is parsed in one place.

- ``read_medqa(path)``, ``read_medmcqa(path, cop_base=None)``, ``read_pubmedqa(path, ground_truth=None)``
  return a :class:`LoadedSplit` of :class:`MultipleChoiceItem` (texts exactly as stored) plus the
  malformed records and notes (the cop base detected, ...); ``strict=True`` raises at the first
  malformed record. A file that is missing, empty, not UTF-8, unlabelled or yields no item raises
  :class:`BenchmarkFileError` naming it.
- ``find_benchmark_files(data_dir)`` / ``files_for(task, data_dir, eval_file)``: where each task's
  files are below a directory.
"""
from megapmc.benchmarks.discover import TASK_NAMES, TaskFiles, files_for, find_benchmark_files
from megapmc.benchmarks.medmcqa import detect_cop_base, read_medmcqa
from megapmc.benchmarks.medqa import read_medqa
from megapmc.benchmarks.pubmedqa import read_ground_truth, read_pubmedqa
from megapmc.benchmarks.records import BenchmarkFileError, LoadedSplit, Malformed, MultipleChoiceItem

__all__ = [
    "BenchmarkFileError", "LoadedSplit", "Malformed", "MultipleChoiceItem", "TASK_NAMES", "TaskFiles",
    "detect_cop_base", "files_for", "find_benchmark_files", "read_ground_truth", "read_medmcqa", "read_medqa",
    "read_pubmedqa",
]
