"""MedC-I instruction data and instruction tuning: sources, the build, the prompt template, the SFT dataset.

- ``template``: PMC-LLaMA's Alpaca prompt and answer formats (shared with ``megapmc.evaluation``).
- ``sources``: one module per kind of original file (conversations, rationale QA, UMLS, released MedC-I).
- ``build``: caps, mixing weights and the summary; writes the instruction JSONL.
- ``preprocess``: tokenisation with response-only loss masks into mmap indexed datasets.
- ``dataset``: truncation, packing (or padding) and the batches of instruction tuning.
"""
