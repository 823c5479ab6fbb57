"""Language retention: multiple-choice accuracy of the base model and the adapter, two backends."""

from pathlib import Path

import pytest
import torch

from trl_embodied import EmbodiedActorCritic
from trl_embodied.language import compare_language, evaluate_language, read_multiple_choice

from .conftest import build_llama

TASK = str(Path(__file__).parent / "data" / "language_mc.jsonl")


@pytest.fixture
def adapted(tokenizer):
    """An actor-critic whose adapter changes the model's log-likelihoods."""
    model = EmbodiedActorCritic(build_llama(len(tokenizer), seed=3), tokenizer)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=1.0, generator=torch.Generator().manual_seed(0))
    return model


def test_the_scorer_backend_agrees_with_a_hand_count(tokenizer):
    model = build_llama(len(tokenizer), seed=3)
    rows = read_multiple_choice(TASK)
    hits = 0
    for row in rows:  # one full sequence per choice, summed log-probs of the choice's tokens
        scores = []
        for choice in row["choices"]:
            prompt_ids = tokenizer(row["question"])["input_ids"]
            ids = tokenizer(row["question"] + " " + choice)["input_ids"]
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0].log_softmax(-1)
            scores.append(sum(float(logits[t - 1, ids[t]]) for t in range(len(prompt_ids), len(ids))))
        hits += max(range(len(scores)), key=scores.__getitem__) == row["answer"]
    result = evaluate_language(model, tokenizer, [TASK], backend="scorer")
    assert result[TASK]["acc"] == pytest.approx(hits / len(rows))


def test_compare_reads_the_base_with_the_adapter_disabled(adapted, tokenizer):
    table = compare_language(adapted, tasks=[TASK], backend="scorer")[TASK]
    plain = evaluate_language(build_llama(len(tokenizer), seed=3), tokenizer, [TASK], backend="scorer")[TASK]
    assert table["base_acc"] == plain["acc"] and table["base_acc_norm"] == plain["acc_norm"]
    merged = adapted.policy.merge_and_unload()
    with_adapter = evaluate_language(merged, tokenizer, [TASK], backend="scorer")[TASK]
    assert table["adapter_acc"] == with_adapter["acc"]
    assert table["delta_acc"] == pytest.approx(table["adapter_acc"] - table["base_acc"])


def test_lm_eval_runs_offline_on_the_local_task_and_agrees(adapted, tokenizer):
    pytest.importorskip("lm_eval", reason="lm-evaluation-harness is the optional 'eval' extra")
    ours = compare_language(adapted, tasks=[TASK], backend="scorer")
    theirs = compare_language(adapted, tasks=[TASK], backend="lm_eval")
    for key, value in ours[TASK].items():
        assert theirs[TASK][key] == pytest.approx(value), key


def test_bad_task_files_and_backends_are_refused(tmp_path, tokenizer):
    model = build_llama(len(tokenizer))
    with pytest.raises(FileNotFoundError, match="no such multiple-choice file"):
        evaluate_language(model, tokenizer, [str(tmp_path / "missing.jsonl")], backend="scorer")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "choices": ["a", "b"], "answer": 5}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: 'answer' must index"):
        evaluate_language(model, tokenizer, [str(bad)], backend="scorer")
    with pytest.raises(ValueError, match="lm-eval task names"):
        evaluate_language(model, tokenizer, ["arc_challenge"], backend="scorer")
    with pytest.raises(TypeError, match="PEFT adapter"):
        compare_language(model, tokenizer, [TASK], backend="scorer")
