"""ActionScorer: prefix-shared scores equal the naive per-action sequences, normalizations, bad input."""

import math

import pytest
import torch

import trl_embodied.scoring
from trl_embodied import ActionScorer, memoized_states
from trl_embodied.scoring import _groups_by_length, naive_action_logprobs

from .conftest import build_gpt2, build_llama


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("add_bos", [False, True])
def test_prefix_shared_scores_equal_the_naive_way(
    architecture, padding_side, add_bos, tokenizer, bos_tokenizer, task_batch
):
    tok = bos_tokenizer if add_bos else tokenizer
    tok.padding_side = padding_side
    model = (build_llama if architecture == "llama" else build_gpt2)(len(tok))
    prompts, actions = task_batch  # 5, 17 and 8 actions; prompts of different lengths
    with torch.no_grad():
        scores = ActionScorer(model, tok, normalization="none").score(prompts, actions)
        naive = naive_action_logprobs(model, tok, prompts, actions)
    assert scores.mask.sum(-1).tolist() == [5, 17, 8]
    assert torch.allclose(scores.logprobs[scores.mask], naive[scores.mask], atol=1e-4, rtol=0)
    # Not trivially equal: the actions' log-probs differ from each other.
    assert scores.logprobs[0, :5].std() > 1e-3


def test_action_tokens_match_the_joint_tokenization(tokenizer, bos_tokenizer, task_batch):
    prompts, actions = task_batch
    for tok in (tokenizer, bos_tokenizer):
        scorer = ActionScorer(build_llama(len(tok)), tok)
        for prompt, env_actions in zip(prompts, actions, strict=True):
            prompt_ids, action_ids = scorer._tokenize(prompt, tuple(env_actions))
            for action, ids in zip(env_actions, action_ids, strict=True):
                assert prompt_ids + ids == tok(f"{prompt} {action}")["input_ids"]
                assert tok.decode(ids) == f" {action}"


def test_scores_are_batch_invariant(llama, tokenizer, task_batch):
    prompts, actions = task_batch
    scorer = ActionScorer(llama, tokenizer)
    with torch.no_grad():
        together = scorer.score(prompts, actions)
        alone = [scorer.score([p], [a]) for p, a in zip(prompts, actions, strict=True)]
    for b, single in enumerate(alone):
        k = len(actions[b])
        assert torch.allclose(together.scores[b, :k], single.scores[0, :k], atol=1e-5)
        assert torch.allclose(together.hidden[b], single.hidden[0], atol=1e-5)


def test_hidden_is_the_last_prompt_token_state(llama, tokenizer, task_batch):
    prompts, actions = task_batch
    with torch.no_grad():
        scores = ActionScorer(llama, tokenizer).score(prompts, actions)
        for b, prompt in enumerate(prompts):
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
            expected = llama(ids, output_hidden_states=True).hidden_states[-1][0, -1]
            assert torch.allclose(scores.hidden[b], expected, atol=1e-5)
    assert scores.hidden.shape == (3, llama.config.hidden_size)


def test_normalizations_on_hand_computed_numbers(llama, tokenizer):
    prompt = "To serve the dish, you should first"
    actions = ["chop nothing", "pick up the tomato"]
    by_mode = {}
    with torch.no_grad():
        for mode in ("none", "token", "word"):
            by_mode[mode] = ActionScorer(llama, tokenizer, normalization=mode).score([prompt], [actions])
    raw = by_mode["none"].logprobs[0]
    tokens = [len(tokenizer(f" {a}", add_special_tokens=False)["input_ids"]) for a in actions]
    assert by_mode["none"].num_tokens[0].tolist() == tokens
    assert torch.allclose(by_mode["none"].scores[0], raw)
    assert torch.allclose(by_mode["token"].scores[0], raw / torch.tensor(tokens, dtype=torch.float))
    assert torch.allclose(by_mode["word"].scores[0], raw / torch.tensor([2.0, 4.0]))
    word = by_mode["word"]
    expected = torch.softmax(raw / torch.tensor([2.0, 4.0]), dim=0)
    assert torch.allclose(word.env(0).probs, expected)
    assert word.env(0).entropy.item() == pytest.approx(-(expected * expected.log()).sum().item(), abs=1e-6)
    assert math.isclose(word.env(0).probs.sum().item(), 1.0, abs_tol=1e-6)


def test_padding_slots_carry_no_probability(llama, tokenizer, task_batch):
    prompts, actions = task_batch
    with torch.no_grad():
        scores = ActionScorer(llama, tokenizer).score(prompts, actions)
    assert scores.scores.shape == (3, 17)
    assert torch.all(scores.probs[~scores.mask] == 0)
    assert torch.allclose(scores.probs.sum(-1), torch.ones(3))
    assert torch.isfinite(scores.entropy).all() and (scores.entropy > 0).all()
    assert scores.env(0).logprobs.shape == (5,)


def test_gradients_flow_from_the_policy_scores(llama, tokenizer, task_batch):
    prompts, actions = task_batch
    scores = ActionScorer(llama, tokenizer).score(prompts, actions)
    scores.log_policy[scores.mask].sum().backward()
    grads = [p.grad for p in llama.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert llama.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_gradients_equal_the_naive_way(tokenizer, task_batch):
    prompts, actions = task_batch
    model_a, model_b = build_llama(len(tokenizer)), build_llama(len(tokenizer))
    ActionScorer(model_a, tokenizer, normalization="none").score(prompts, actions).logprobs.sum().backward()
    naive_action_logprobs(model_b, tokenizer, prompts, actions).sum().backward()
    for (name, a), b in zip(model_a.named_parameters(), model_b.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-4, rtol=1e-4), name


@pytest.mark.parametrize(
    ("prompts", "actions", "error", "message"),
    [
        (["p"], [[]], ValueError, "environment 0: the list of valid actions is empty"),
        (["p", "q"], [["a"], ["b", "b"]], ValueError, r"environment 1: duplicated valid actions \['b'\]"),
        (["p"], [["a", 3]], TypeError, "environment 0: valid action 1 is 3"),
        (["p"], [["a"], ["b"]], ValueError, "1 prompts but 2 action lists"),
        (["p", 5], [["a"], ["b"]], TypeError, "environment 1: the prompt must be a str"),
        ("p", [["a"]], TypeError, "got a single str"),
        (["p"], ["abc"], TypeError, "environment 0: actions must be a list of str"),
        ([], [], ValueError, "got no prompts"),
    ],
)
def test_bad_input_names_the_environment(llama, tokenizer, prompts, actions, error, message):
    with pytest.raises(error, match=message):
        ActionScorer(llama, tokenizer).score(prompts, actions)


def test_a_prompt_longer_than_the_context_is_refused(llama, tokenizer):
    long_prompt = "walk to the kitchen " * 200  # well past the tiny model's 512 positions
    with pytest.raises(ValueError, match="environment 1: the prompt .* exceeds the model's context of 512"):
        ActionScorer(llama, tokenizer).score(["short", long_prompt], [["a"], ["b"]])


def test_non_finite_log_probs_are_refused(llama, tokenizer):
    with torch.no_grad():
        llama.lm_head.weight[0, 0] = float("nan")
    with pytest.raises(
        ValueError, match="non-finite log-probabilities for environment 0 action 'chop nothing'"
    ):
        ActionScorer(llama, tokenizer).score(["you should first"], [["chop nothing"]])


def test_unknown_normalization_is_refused(llama, tokenizer):
    with pytest.raises(ValueError, match="normalization='words'"):
        ActionScorer(llama, tokenizer, normalization="words")


def test_works_with_gradient_checkpointing(tokenizer, task_batch):
    """TRL turns gradient checkpointing on by default; the packed forward needs no KV cache."""
    plain, checkpointed = build_llama(len(tokenizer)), build_llama(len(tokenizer))
    checkpointed.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    checkpointed.train()
    plain.train()
    outputs = []
    for model in (plain, checkpointed):
        scores = ActionScorer(model, tokenizer).score(*task_batch)
        scores.log_policy[scores.mask].sum().backward()
        outputs.append(scores)
    assert torch.allclose(outputs[0].scores, outputs[1].scores, atol=1e-5)
    for a, b in zip(plain.parameters(), checkpointed.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-5)


def count_decoder_rows(model) -> list[int]:
    """Record the batch size of every decoder forward of ``model``."""
    rows: list[int] = []
    model.get_decoder().register_forward_pre_hook(
        lambda _, args, kwargs: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    return rows


def test_repeated_states_are_computed_once_and_equal_separate_scoring(tokenizer, task_batch):
    """A batch that repeats states runs each distinct state once; values and gradients are those of
    scoring every row on its own (a repeated row's gradient counts once per copy)."""
    prompts, actions = task_batch
    order = [0, 1, 0, 0, 2, 1]
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    model_a, model_b = build_llama(len(tokenizer)), build_llama(len(tokenizer))
    rows = count_decoder_rows(model_a)
    together = ActionScorer(model_a, tokenizer).score(
        [prompts[i] for i in order], [actions[i] for i in order]
    )
    assert rows == [3]
    (together.log_policy.masked_fill(~together.mask, 0).sum(-1) * weights).sum().backward()
    scorer_b = ActionScorer(model_b, tokenizer)
    for row, i in enumerate(order):
        alone = scorer_b.score([prompts[i]], [actions[i]])
        k = len(actions[i])
        assert torch.allclose(together.scores[row, :k], alone.scores[0, :k], atol=1e-5)
        assert torch.allclose(together.hidden[row], alone.hidden[0], atol=1e-5)
        (alone.log_policy[0, :k].sum() * weights[row]).backward()
    for (name, a), b in zip(model_a.named_parameters(), model_b.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-4, rtol=1e-4), name
    # reuse_states=False, the ablation: every row through the model, the same scores.
    every_row = ActionScorer(model_a, tokenizer, reuse_states=False)
    rows.clear()
    apart = every_row.score([prompts[i] for i in order], [actions[i] for i in order])
    assert rows == [6] and torch.allclose(apart.scores, together.scores, atol=1e-5)


def test_errors_name_the_callers_environment_when_states_repeat(llama, tokenizer):
    long_prompt = "walk to the kitchen " * 200
    with pytest.raises(ValueError, match="environment 2: the prompt"):
        ActionScorer(llama, tokenizer).score(["short", "short", long_prompt, long_prompt], [["a"]] * 4)


def test_memoized_states_computes_only_unseen_distinct_states():
    calls = []

    def compute(prompts, actions):
        calls.append(list(zip(prompts, map(tuple, actions), strict=True)))
        return [f"{p}:{len(a)}" for p, a in zip(prompts, actions, strict=True)]

    cache: dict = {}
    first = memoized_states(cache, ["s", "t", "s"], [["a"], ["a", "b"], ["a"]], compute)
    second = memoized_states(cache, ["t", "u", "s", "u"], [["a", "b"], ["a"], ["a"], ["a"]], compute)
    assert first == ["s:1", "t:2", "s:1"] and second == ["t:2", "u:1", "s:1", "u:1"]
    # The same prompt with other actions is another state.
    third = memoized_states(cache, ["s"], [["b"]], compute)
    assert third == ["s:1"] and calls == [
        [("s", ("a",)), ("t", ("a", "b"))],
        [("u", ("a",))],
        [("s", ("b",))],
    ]


def test_chunks_read_the_prompt_cache_of_a_model_with_absolute_positions(tokenizer, task_batch):
    """GPT-2 (learned absolute positions, its own attention and cache classes) gives the unchunked scores."""
    model = build_gpt2(len(tokenizer))
    whole = ActionScorer(model, tokenizer).score(*task_batch)
    chunked = ActionScorer(model, tokenizer, max_actions_per_forward=3).score(*task_batch)
    torch.testing.assert_close(chunked.logprobs, whole.logprobs, atol=1e-4, rtol=0)
    torch.testing.assert_close(chunked.hidden, whole.hidden, atol=1e-5, rtol=0)


def test_chunks_refuse_the_models_gradient_checkpointing_by_name(tokenizer, task_batch):
    model = build_llama(len(tokenizer))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    scorer = ActionScorer(model, tokenizer, max_actions_per_forward=4)
    with torch.no_grad():  # without gradients nothing is checkpointed: allowed
        scorer.score(*task_batch)
    with pytest.raises(ValueError, match="gradient_checkpointing_disable"):
        scorer.score(*task_batch)


def test_chunked_rows_are_grouped_by_length_within_the_token_budget():
    """Rows go through the decoder longest first, each group padded to its own longest row: rows x that
    length stays within the budget, and a row longer than the budget goes alone."""
    groups = _groups_by_length(torch.tensor([3, 10, 4, 9, 2]), tokens_per_group=20)
    assert [g.tolist() for g in groups] == [[1, 3], [2, 0, 4]]
    assert [g.tolist() for g in _groups_by_length(torch.tensor([30, 5, 6]), 20)] == [[0], [2, 1]]


@pytest.mark.parametrize("chunk", [1, 4, 16])
def test_chunks_of_actions_give_the_unchunked_scores_and_gradients(tokenizer, task_batch, chunk, monkeypatch):
    """max_actions_per_forward encodes each prompt once and scores its actions in chunks that attend to the
    prompt's keys and values, a few rows per forward and checkpointed with gradients (bounded memory):
    log-probs, the prompt's hidden state and the gradients equal one sequence per state."""
    prompts, actions = task_batch  # 5, 17 and 8 actions
    model_a, model_b = build_llama(len(tokenizer)), build_llama(len(tokenizer))
    rows, lengths = count_decoder_rows(model_b), []
    model_b.get_decoder().register_forward_pre_hook(
        lambda _, args, kwargs: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    whole = ActionScorer(model_a, tokenizer).score(prompts, actions)
    monkeypatch.setattr(trl_embodied.scoring, "TOKENS_PER_CHUNKED_FORWARD", 64)  # several groups here
    chunked = ActionScorer(model_b, tokenizer, max_actions_per_forward=chunk).score(prompts, actions)
    # each prompt once, then ceil(k / chunk) rows of actions per state reading its keys and values, through
    # the decoder in groups of a bounded number of tokens
    assert sum(rows) == len(prompts) + sum(-(-len(a) // chunk) for a in actions)
    assert len(rows) > 1 and all(
        r * length <= max(64, length) for r, length in zip(rows, lengths, strict=True)
    )
    # each group cut to its own longest row: fewer padded tokens than every row at the batch's longest
    assert sum(r * length for r, length in zip(rows, lengths, strict=True)) < sum(rows) * max(lengths)
    torch.testing.assert_close(chunked.logprobs, whole.logprobs, atol=1e-4, rtol=0)
    torch.testing.assert_close(chunked.hidden, whole.hidden, atol=1e-5, rtol=0)
    assert torch.equal(chunked.mask, whole.mask)
    weights = torch.arange(1.0, 1.0 + whole.scores.shape[1])
    for scores in (whole, chunked):
        (scores.log_policy.masked_fill(~scores.mask, 0) * weights).sum().backward()
    for (name, a), b in zip(model_a.named_parameters(), model_b.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-4, rtol=1e-4), name
    with pytest.raises(ValueError, match="max_actions_per_forward=0; use None or a positive count"):
        ActionScorer(model_a, tokenizer, max_actions_per_forward=0)
