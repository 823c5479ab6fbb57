"""The Python blocks of README.md and of every docs/ page run, each page in order in one namespace, as a
reader would paste them: on a tiny model instead of the default one, with budgets made small and the
Hub replaced by a recorder. The configuration and metric references are checked against the code. A
page that drifts from the code fails here."""

import dataclasses
import re
from pathlib import Path

import datasets
import huggingface_hub
import pytest

from trl_embodied import EmbodiedPPOConfig

from .conftest import build_llama

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
# Budgets made small: (text in a page, what runs instead). Each must be found in some page, so that an
# edit that drops one is noticed here.
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
# Blocks that cannot run here are named, not silently passed: a model from the Hub (offline), vLLM (its own
# venv: tests/test_vllm.py covers the same calls) and a vLLM server (tests/test_vllm_server.py, test_vllm.py).
RUN_ELSEWHERE = ('"Qwen/Qwen3-0.6B"', "from vllm import", "VLLMClient(")
# The Trainer's end-of-training summary (train_runtime, train_loss, ...) and bookkeeping, not metrics.
NOT_METRICS = re.compile(r"^(train_\w+|total_flos|step)$")


def page_program(page: str) -> str:
    blocks = BLOCK.findall((ROOT / page).read_text())
    program = "\n".join(b for b in blocks if not any(m in b for m in RUN_ELSEWHERE))
    for old, new in SMALL_BUDGETS:
        program = program.replace(old, new)
    return program


def test_every_small_budget_is_found_in_a_page():
    pages = "\n".join(BLOCK.findall("\n".join((ROOT / p).read_text() for p in PAGES)))
    missing = [old for old, _ in SMALL_BUDGETS if old not in pages]
    assert not missing, f"no page contains {missing}: update SMALL_BUDGETS"


@pytest.fixture
def offline_tiny_world(tmp_path, tokenizer, monkeypatch):
    """The default model replaced by a tiny one, the Hub by a list of pushed repo ids; cwd in tmp_path."""
    tiny = build_llama(len(tokenizer), max_positions=4096)

    def tiny_base_model(name_or_path=None, **kwargs):
        return tiny, tokenizer

    import trl_embodied
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
    return pushed


def run_page(page: str) -> dict:
    namespace: dict = {}
    exec(compile(page_program(page), str(ROOT / page), "exec"), namespace)
    return namespace


def documented_metrics() -> set[str]:
    section = (ROOT / "docs" / "training.md").read_text().split("## Logged metrics", 1)[1]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([^`]+)`", row)}


def test_the_readme_runs_and_every_metric_it_logs_is_documented(offline_tiny_world, tmp_path):
    pytest.importorskip("textworld")
    namespace = run_page("README.md")
    trainer = namespace["trainer"]
    assert trainer._env_steps == 32 and (tmp_path / "tomato-salad" / "README.md").is_file()
    assert offline_tiny_world == ["tomato-salad"]  # push_to_hub uploaded the run
    logged = {key for row in trainer.state.log_history for key in row if not NOT_METRICS.match(key)}
    assert {"eval_success_rate", "policy/approx_kl", "value/explained_variance"} <= logged, sorted(logged)
    undocumented = logged - documented_metrics()
    assert not undocumented, f"docs/training.md's 'Logged metrics' lacks {sorted(undocumented)}"


@pytest.mark.parametrize("page", [p for p in PAGES if p != "README.md"])
def test_the_docs_pages_run(page, offline_tiny_world, tmp_path):
    if "textworld" in page_program(page):
        pytest.importorskip("textworld")
    namespace = run_page(page)
    if page == "docs/integrations.md":
        assert offline_tiny_world == ["me/tomato-salad-demos"] and len(namespace["sft_pairs"]) > 0
    if page == "docs/evaluation.md":
        assert (tmp_path / "curves.png").is_file() and 0.0 <= namespace["result"].success_rate <= 1.0
    if page == "docs/scoring.md":
        assert (tmp_path / "out" / "value_head.safetensors").is_file()
    if page == "docs/environments.md":
        assert namespace["reward"] == 1.0 and namespace["info"]["success"]


def test_the_configuration_reference_lists_every_field_with_its_default():
    """docs/training.md's table: every field EmbodiedPPOConfig declares (its own and the Trainer defaults it
    changes), each with the default the code has."""
    text = (ROOT / "docs" / "training.md").read_text()
    section = text.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", section, re.M))
    fields = {f.name: f for f in dataclasses.fields(EmbodiedPPOConfig)}
    for name in EmbodiedPPOConfig.__dict__["__annotations__"]:
        field = fields[name]
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        expected = f'"{default}"' if isinstance(default, str) else repr(default)
        assert name in rows, f"docs/training.md's configuration reference lacks {name}"
        assert rows[name] == expected, f"{name}: documented default {rows[name]}, the code's {expected}"
