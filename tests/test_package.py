"""The package as users import it: lazy, silent, and its environments usable without torch."""

import subprocess
import sys

import pytest

import trl_embodied

HEAVY = ("torch", "trl", "transformers", "peft", "bitsandbytes", "accelerate")


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_import_is_light_and_silent():
    result = run_python(
        f"import sys, trl_embodied\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert result.stderr == ""


def test_environments_work_without_torch():
    # A finder that refuses torch, as on a machine where it is not installed.
    result = run_python(
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('torch is not installed')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from trl_embodied import make_env\n"
        "env = make_env('Household-FoodPreparation-v0')\n"
        "_, info = env.reset(seed=0)\n"
        "for action in env.unwrapped.plan():\n"
        "    _, reward, terminated, _, info = env.step(action)\n"
        "print(reward, terminated)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1.0 True"


def test_every_public_name_resolves_and_unknown_names_fail_clearly():
    for name in trl_embodied.__all__:
        assert getattr(trl_embodied, name) is not None, name
    assert set(trl_embodied.__all__) <= set(dir(trl_embodied))
    assert trl_embodied.EmbodiedPPOTrainer.__module__.startswith("trl_embodied.trainer")
    with pytest.raises(AttributeError, match="no attribute 'EmbodiedPPOTraner'"):
        trl_embodied.EmbodiedPPOTraner  # noqa: B018
