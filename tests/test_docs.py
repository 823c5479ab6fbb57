"""The README's Python blocks run, in order, in one namespace, as a reader would paste them: on a tiny
model instead of the default one, with budgets made small and the Hub replaced by a recorder. A block
that drifts from the code fails here."""

import re
from pathlib import Path

import datasets
import huggingface_hub
import pytest

from .conftest import build_llama

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
# Budgets made small: (text in the README, what runs instead). Each must be found, so that a README edit
# that drops one is noticed here.
SMALL_BUDGETS = [
    ("total_env_steps=10_000,", "total_env_steps=32,"),
    ("rollout_steps=32,", "rollout_steps=8,"),
    (
        "learning_rate=1e-3,  # the actor",
        'learning_rate=1e-3, eval_episodes=2, report_to="none", use_cpu=True,  # the actor',
    ),
    ("episodes=10\n", "episodes=2\n"),
    ("eval_every=1024))", "eval_every=128, total_env_steps=256, eval_episodes=2))"),
    ("episodes=16)", "episodes=2)"),
    ('"trl_embodied/Overcooked-TomatoSalad-v0", 16)', '"trl_embodied/Overcooked-TomatoSalad-v0", 2)'),
    (
        '"trl_embodied/Overcooked-TomatoSalad-v0", 16, greedy=True)',
        '"trl_embodied/Overcooked-TomatoSalad-v0", 2, greedy=True)',
    ),
]
# Blocks that need a model from the Hub run nowhere offline; they are named here, not silently passed.
NEEDS_THE_HUB = ('"Qwen/Qwen3-0.6B"',)


def readme_program() -> str:
    blocks = [b for b in BLOCK.findall(README.read_text()) if not any(m in b for m in NEEDS_THE_HUB)]
    program = "\n".join(blocks)
    for old, new in SMALL_BUDGETS:
        assert old in program, f"the README no longer contains {old!r}: update SMALL_BUDGETS"
        program = program.replace(old, new)
    return program


def test_the_readme_python_blocks_run(tmp_path, tokenizer, monkeypatch):
    pytest.importorskip("textworld")
    tiny = build_llama(len(tokenizer), max_positions=4096)

    def tiny_base_model(name_or_path=None, **kwargs):
        return tiny, tokenizer

    import trl_embodied.modeling
    import trl_embodied.trainer.embodied_ppo_trainer as trainer_module

    for module in (trl_embodied, trl_embodied.modeling, trainer_module):
        monkeypatch.setattr(module, "load_base_model", tiny_base_model)
    pushed = []
    monkeypatch.setattr(
        huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: type("R", (), {"repo_id": repo_id})
    )
    monkeypatch.setattr(
        huggingface_hub.HfApi, "upload_folder", lambda self, **kw: pushed.append(kw["repo_id"])
    )
    monkeypatch.setattr(datasets.Dataset, "push_to_hub", lambda self, repo_id, **kw: pushed.append(repo_id))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_program(), str(README), "exec"), namespace)
    assert namespace["trainer"]._env_steps == 32 and (tmp_path / "tomato-salad" / "README.md").is_file()
    assert "me/tomato-salad-demos" in pushed and len(pushed) == 2
    assert (tmp_path / "curves.png").is_file() and (tmp_path / "out" / "value_head.safetensors").is_file()
