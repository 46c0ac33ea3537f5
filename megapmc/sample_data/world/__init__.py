"""A generated medical world for the ablation (docs/ablation.md): made-up entities and facts, the
pretraining corpora that state them, MedC-I sources built from training facts, and benchmark items about
held-out facts, all seeded and written by the project (nothing is downloaded).

    python -m megapmc.sample_data.world --output-dir runs/world [--seed 1234] [--num-diseases 72]
"""
from megapmc.sample_data.world.entities import Fact, World, generate_world
from megapmc.sample_data.world.write import write_world

__all__ = ["Fact", "World", "generate_world", "write_world"]
