"""The LLaMA model, its configuration presets and rotary embeddings."""
from megapmc.model.config import LlamaConfig

__all__ = ["LlamaConfig"]
