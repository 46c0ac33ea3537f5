"""The one error type of checkpoint reading and writing."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used for this run; the message names the file and says what to do."""


class CheckpointDamaged(CheckpointError):
    """A file of the checkpoint is missing, truncated, garbled, changed since it was saved, or belongs to
    another iteration or run: an older checkpoint may still be intact."""
