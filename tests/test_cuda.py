"""The trainer and scorer on a CUDA device: skipped where there is none (CI runs on CPU)."""

import pytest
import torch

from trl_embodied import ActionScorer

from .conftest import build_llama
from .test_trainer import make_trainer, win_probability
from .toy_envs import TwoChoiceEnv

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_scores_on_cuda_match_cpu(tokenizer):
    model = build_llama(len(tokenizer), init_std=0.1)
    prompts = [TwoChoiceEnv().reset()[0], "You are in the kitchen. Your next step is to"]
    actions = [TwoChoiceEnv.ACTIONS, ["walk to the kitchen", "open the fridge", "grab the milk"]]
    on_cpu = ActionScorer(model, tokenizer, "word").score(prompts, actions)
    on_cuda = ActionScorer(model.cuda(), tokenizer, "word").score(prompts, actions)
    assert on_cuda.scores.device.type == "cuda"
    torch.testing.assert_close(on_cuda.scores.cpu(), on_cpu.scores, rtol=1e-4, atol=1e-5)


def test_trainer_learns_on_cuda(tmp_path, tokenizer):
    base_model = build_llama(len(tokenizer), init_std=0.1)
    trainer = make_trainer(tmp_path, tokenizer, base_model=base_model, max_steps=20, use_cpu=False)
    model = trainer.accelerator.unwrap_model(trainer.model)
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    trainer.train()
    assert win_probability(trainer) > 0.9
    assert trainer.evaluate()["eval_success_rate"] == 1.0
