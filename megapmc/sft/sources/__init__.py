"""MedC-I sources: each streams one kind of original file and yields ``InstructionRecord``s."""
from megapmc.sft.sources.common import BadRecordError, InstructionRecord, Problems

__all__ = ["BadRecordError", "InstructionRecord", "Problems"]
