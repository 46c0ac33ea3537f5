"""Training: flags → typed configs (``arguments``, ``config``), the loop shared by pretraining and
instruction tuning (``trainer.train``), and what a run reports (``logging``)."""
