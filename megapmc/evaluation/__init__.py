"""Evaluation on PubMedQA, MedMCQA and MedQA-USMLE: loaders of the original files, log-likelihood and
generation scoring, the answer parser, backends (Hugging Face, megapmc), reports, contamination check.

Start at ``megapmc.evaluation.evaluator.evaluate``; ``tools/evaluate.py`` is its command line.
"""
