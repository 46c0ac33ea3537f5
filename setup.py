"""Build megapmc and its C++ extension ``megapmc._C`` (indexed-dataset builder and index helpers)."""
from glob import glob

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

ext_modules = [
    Pybind11Extension(
        "megapmc._C",
        sorted(glob("csrc/*.cpp")),
        include_dirs=["csrc"],
        cxx_std=17,
        extra_compile_args=["-O3"],
    )
]

setup(
    name="megapmc",
    version="0.1.0",
    description="Megatron-style training of medical LLaMA models the PMC-LLaMA way",
    packages=find_packages(include=["megapmc", "megapmc.*"]),
    package_data={"megapmc": ["sample_data/**/*", "sample_data/*"]},
    include_package_data=True,
    ext_modules=ext_modules,
    cmdclass={"build_ext": build_ext},
    python_requires=">=3.10",
    install_requires=[
        # A range that the locally kept CPU wheel (2.13.0) satisfies, so no CUDA build is pulled in.
        "torch>=2.3",
        "numpy>=1.24",
        "sentencepiece>=0.1.99",
        "tokenizers>=0.15",
        "transformers>=4.40",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "pyyaml>=6",
        "zstandard>=0.21",
        # MinHash LSH near-duplicate removal of the cleaned books (megapmc/data/medc_k/near_dedup.py).
        "datasketch>=1.6",
        "tensorboard>=2.14",
        "matplotlib>=3.7",
        # XXH3 checksums of every checkpoint file (megapmc/checkpoint/integrity.py).
        "xxhash>=3.0",
        # Benchmark copies from the Hugging Face hub come as parquet (megapmc.benchmarks reads them).
        "pyarrow>=12",
    ],
    extras_require={
        # megatron-core: tests/data/test_indexed_dataset.py checks our shards byte for byte against its builder.
        "test": ["pytest>=7", "hypothesis>=6", "megatron-core>=0.12"],
        # Optional GPU backends: detected at run time, never required.
        "gpu": ["flash-attn>=2.5", "liger-kernel>=0.4"],
        "te": ["transformer-engine[pytorch]>=1.8"],
        # lm-evaluation-harness: tests/evaluation/test_harness_parity.py checks per-item choices against it.
        "harness": ["lm-eval[hf]>=0.4.5"],
    },
    entry_points={
        "console_scripts": [
            "megapmc-pretrain=megapmc.pretrain:main",
            "megapmc-finetune=megapmc.finetune:main",
            # lm_eval with "--model megapmc" registered (lm-eval 0.4.x loads no model plugins by itself).
            "megapmc-lm-eval=megapmc.evaluation.lm_eval_cli:main",
        ]
    },
)
