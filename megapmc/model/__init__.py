"""The LLaMA model, its configuration presets and rotary embeddings."""
from megapmc.model.config import LlamaConfig
from megapmc.model.llama import LlamaModel, TransformerOptions, build_model, num_parameters

__all__ = ["LlamaConfig", "LlamaModel", "TransformerOptions", "build_model", "num_parameters"]
