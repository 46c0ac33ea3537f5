"""MedC-K corpus tools: S2ORC → PubMed Central papers (``s2orc``), book-PDF text cleaning (``books``),
and the streaming JSONL-in/JSONL-out drivers both command-line tools use (``pipeline``)."""
