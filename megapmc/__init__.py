"""megapmc: Megatron-style training of medical LLaMA models, the PMC-LLaMA way."""
__version__ = "0.1.0"
