"""Checkpoint directories: per-TP-rank model shards, per-rank optimizer shards, the latest tracker."""
