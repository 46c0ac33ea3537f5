"""Data: tokenizers, the Megatron indexed dataset, preprocessing, MedC-K corpus tools, datasets and samplers.

Import from the submodules (``megapmc.data.indexed_dataset``, ``megapmc.data.tokenizer`` ...); this
package does not import them eagerly, so that tools load only what they use.
"""
