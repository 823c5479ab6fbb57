"""Valid-action scoring: the policy's hot path.

For a prompt ``s`` and valid actions ``a_1..a_k``, the score of ``a_i`` is the joint log-probability of
its tokens after the prompt, ``log P(a_i | s) = sum_t log p(w_t | s, w_<t)``, optionally normalized by
its token or word count; the policy is the softmax of the scores over the ``k`` actions (TWOSOME).

Prefix sharing. The naive way scores each action as its own ``prompt + " " + action`` sequence and so
encodes the prompt ``k`` times. :class:`ActionScorer` packs each environment into one sequence,
``[prompt][a_1][a_2]...[a_k]``, with position ids that restart after the prompt for every action and
a 4D attention mask in which each action's tokens attend to the prompt and to their own earlier tokens
only. One forward over the batch of packed sequences then gives, for every action token, exactly the
hidden state the naive sequence would give, while the prompt is computed once. The LM head runs only
at the positions whose next token is an action token, never over the prompt. The same call with
gradients serves the PPO update, and it needs no KV cache, so gradient checkpointing works with it.

Repeated states. Environments revisit states: a rollout's environments start alike, and Tomato Salad's
128-step PPO iterations visit about 8 distinct (prompt, actions) pairs. :meth:`ActionScorer.score` runs
each distinct pair of its batch once and indexes the result back to every copy, so a repeated row costs
nothing and its gradient is the sum over its copies, exactly as if each were scored on its own.
:func:`memoized_states` carries the same idea across calls while a policy's parameters stay fixed (a
rollout, an evaluation).

Tokenization. Actions are tokenized as they appear after the prompt: the tokens of
``prompt + " " + action`` beyond the prompt's own tokens. Where a tokenizer merges tokens across that
boundary (the joint tokens do not start with the prompt's tokens), the scorer keeps the prompt's tokens
and scores the standalone tokens of ``" " + action``, and warns once; the naive concatenation then
differs from the scorer for that pair.
"""

from __future__ import annotations

import functools
import inspect
import sys
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.utils.checkpoint
from torch import nn
from transformers import DynamicCache

from trl_embodied.envs.core import check_valid_actions

Normalization = Literal["none", "token", "word"]
NORMALIZATIONS = ("none", "token", "word")


@dataclass
class EnvScores:
    """One environment's slice of :class:`ActionScores`; every tensor is 1-D over its ``k`` actions."""

    logprobs: torch.Tensor
    scores: torch.Tensor
    probs: torch.Tensor
    entropy: torch.Tensor  # scalar
    hidden: torch.Tensor  # [hidden_size]


@dataclass
class ActionScores:
    """Scores of a batch of environments, padded to the largest number of actions ``K``.

    Attributes:
        logprobs: ``[B, K]`` raw joint log-probability of each action (0 at padding).
        scores: ``[B, K]`` after normalization (``-inf`` at padding), the policy's logits.
        mask: ``[B, K]`` bool, True for real actions.
        num_tokens: ``[B, K]`` tokens per action (0 at padding).
        hidden: ``[B, hidden_size]`` last hidden state at each prompt's last token (for the value head).

    ``scores.env(b)`` gives environment ``b``'s unpadded 1-D tensors.
    """

    logprobs: torch.Tensor
    scores: torch.Tensor
    mask: torch.Tensor
    num_tokens: torch.Tensor
    hidden: torch.Tensor

    @property
    def log_policy(self) -> torch.Tensor:
        """``[B, K]`` log pi(a | s): log-softmax of ``scores`` over each env's actions (-inf at padding)."""
        return torch.log_softmax(self.scores, dim=-1)

    @property
    def probs(self) -> torch.Tensor:
        """``[B, K]`` pi(a | s) (0 at padding)."""
        return torch.softmax(self.scores, dim=-1)

    @property
    def entropy(self) -> torch.Tensor:
        """``[B]`` entropy of each env's policy."""
        log_policy = self.log_policy.masked_fill(~self.mask, 0.0)
        return -(self.probs * log_policy).sum(-1)

    def env(self, index: int) -> EnvScores:
        k = int(self.mask[index].sum())
        return EnvScores(
            logprobs=self.logprobs[index, :k],
            scores=self.scores[index, :k],
            probs=self.probs[index, :k],
            entropy=self.entropy[index],
            hidden=self.hidden[index],
        )

    def __len__(self) -> int:
        return self.scores.shape[0]


State = tuple[str, tuple[str, ...]]
#: With ``max_actions_per_forward``: the padded tokens of the packed sequences (chunks of a state's actions)
#: that one decoder forward takes (a sequence longer than this goes alone).
TOKENS_PER_CHUNKED_FORWARD = 2048


class UniqueStates(NamedTuple):
    """The distinct ``(prompt, actions)`` pairs of a batch, in order of first appearance."""

    states: list[State]
    inverse: torch.Tensor  # [B] the index of each row's pair in ``states``
    first_rows: list[int]  # [len(states)] the row where each pair first appears (errors name it)


def unique_states(
    prompts: Sequence[str], actions: Sequence[Sequence[str]], reuse: bool = True
) -> UniqueStates:
    """The distinct ``(prompt, actions)`` pairs of a batch (see :class:`UniqueStates`); ``reuse=False``
    keeps every row as a state of its own."""
    keys = [(prompt, tuple(env_actions)) for prompt, env_actions in zip(prompts, actions, strict=True)]
    if not reuse:
        return UniqueStates(keys, torch.arange(len(keys)), list(range(len(keys))))
    position: dict[State, int] = {}
    first_rows: list[int] = []
    inverse = []
    for row, key in enumerate(keys):
        if key not in position:
            position[key] = len(position)
            first_rows.append(row)
        inverse.append(position[key])
    return UniqueStates(list(position), torch.tensor(inverse, dtype=torch.long), first_rows)


def memoized_states(
    cache: dict[Hashable, Any],
    prompts: Sequence[str],
    actions: Sequence[Sequence[str]],
    compute: Callable[[list[str], list[list[str]]], Sequence[Any]],
) -> list[Any]:
    """Each state's result, from ``cache`` where it is there, else from one ``compute`` call over the
    distinct missing states (which fills the cache).

    Valid only while the policy behind ``compute`` stays fixed: the caller owns the cache and empties it
    whenever the parameters change (the trainer at every rollout, an evaluation per call).

    Args:
        cache: maps ``(prompt, tuple(actions))`` to a result.
        compute: ``compute(prompts, actions)`` returns one result per state, in order.
    """
    states, inverse, _ = unique_states(prompts, actions)
    missing = [state for state in states if state not in cache]
    if missing:
        results = compute([prompt for prompt, _ in missing], [list(acts) for _, acts in missing])
        cache.update(zip(missing, results, strict=True))
    return [cache[states[i]] for i in inverse.tolist()]


def action_token_ids(
    tokenizer, prompt: str, actions: Sequence[str]
) -> tuple[list[int], list[list[int]], list[str]]:
    """The prompt's token ids, each action's token ids as they follow the prompt (the tokens of
    ``prompt + " " + action`` beyond the prompt's own), and the actions whose tokens merge across that
    boundary, which get the standalone tokens of ``" " + action`` instead (see the module docstring)."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    if not actions:
        return prompt_ids, [], []
    joint = tokenizer([f"{prompt} {action}" for action in actions])["input_ids"]
    action_ids, merged = [], []
    for action, ids in zip(actions, joint, strict=True):
        if ids[: len(prompt_ids)] == prompt_ids and len(ids) > len(prompt_ids):
            action_ids.append(ids[len(prompt_ids) :])
        else:
            merged.append(action)
            action_ids.append(tokenizer(f" {action}", add_special_tokens=False)["input_ids"])
    return prompt_ids, action_ids, merged


def check_batch(prompts: Sequence[str], actions: Sequence[Sequence[str]]) -> None:
    """Raise naming the environment for a batch no scorer can score: mismatched lengths, no prompts, a
    non-str prompt, or an action list that is a str, empty, duplicated or not of str."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of str (one per environment), got a single str.")
    if len(prompts) != len(actions):
        raise ValueError(
            f"got {len(prompts)} prompts but {len(actions)} action lists; pass one action list per prompt."
        )
    if not prompts:
        raise ValueError("got no prompts; pass at least one environment.")
    for index, (prompt, env_actions) in enumerate(zip(prompts, actions, strict=True)):
        if not isinstance(prompt, str):
            raise TypeError(f"environment {index}: the prompt must be a str, got {type(prompt).__name__}.")
        if isinstance(env_actions, str):
            raise TypeError(f"environment {index}: actions must be a list of str, got a single str.")
        check_valid_actions(env_actions, sys.maxsize, f"environment {index}")


def _in_groups(
    function: Callable[..., Any],
    tensors: Sequence[torch.Tensor],
    groups: Sequence[Any],
    shared: Sequence[torch.Tensor] = (),
) -> list[Any]:
    """``function(*(tensor[rows] for tensor in tensors), *shared)`` for each ``rows`` (a slice or an index
    tensor) of ``groups``; with gradients each call is checkpointed (its activations recomputed in backward),
    so only one group's are held at once."""
    outputs = []
    for rows in groups:
        piece = [tensor[rows] for tensor in tensors] + list(shared)
        if torch.is_grad_enabled():
            outputs.append(torch.utils.checkpoint.checkpoint(function, *piece, use_reentrant=False))
        else:
            outputs.append(function(*piece))
    return outputs


def _in_slices(
    function: Callable[..., torch.Tensor], tensors: Sequence[torch.Tensor], size: int
) -> torch.Tensor:
    """``function(*tensors)`` computed ``size`` rows at a time and concatenated (see :func:`_in_groups`)."""
    slices = [slice(start, start + size) for start in range(0, tensors[0].shape[0], size)]
    return torch.cat(_in_groups(function, tensors, slices)) if slices else function(*tensors)


def _groups_by_length(lengths: torch.Tensor, tokens_per_group: int) -> list[torch.Tensor]:
    """``[R]`` row lengths -> row indices in groups whose padded size (rows x the group's longest row) stays
    within ``tokens_per_group``, a longer row alone. Rows go longest first, so a group's rows are of about
    the same length and it pads them to that, not to the batch's longest."""
    groups: list[list[int]] = []
    for row in torch.argsort(lengths, descending=True, stable=True).tolist():
        if groups and (len(groups[-1]) + 1) * int(lengths[groups[-1][0]]) <= tokens_per_group:
            groups[-1].append(row)
        else:
            groups.append([row])
    return [torch.tensor(group, dtype=torch.long) for group in groups]


@dataclass
class _Rows:
    """Right-padded token rows for the decoder."""

    input_ids: torch.Tensor  # [R, L]
    position_ids: torch.Tensor  # [R, L]
    segments: torch.Tensor  # [R, L]: 0 prompt, i + 1 the row's action i, -1 padding

    def to(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input_ids, segments, position_ids)`` on ``device``, the order the decoding functions take."""
        return self.input_ids.to(device), self.segments.to(device), self.position_ids.to(device)


@dataclass
class _Batch:
    """``S`` states packed for the decoder, in one of two layouts.

    Packed (unchunked): one row per state, ``[prompt][a_1]...[a_k]``. With ``max_actions_per_forward``: one
    prompt row per state, encoded once, and one row per chunk of a state's actions, ``[a_i]...[a_j]``, which
    attends to its state's prompt through the prompt's keys and values.

    The decoder's hidden states of all rows, flattened (``prompts`` first, then ``rows``), form one table
    ``[T, H]``; ``token_source`` and ``prompt_last`` index into it.
    """

    rows: _Rows  # [R, L]
    prompts: _Rows | None  # [S, P] in the chunked layout, else None
    row_state: torch.Tensor  # [R] the state of each row
    prompt_last: torch.Tensor  # [S] each state's last prompt token in the table (its value's input)
    # One entry per action token: the table entry whose hidden state predicts it, and what it scores.
    token_source: torch.Tensor  # [N]
    token_target: torch.Tensor  # [N] token ids
    token_action: torch.Tensor  # [N] flat index s * K + i: the state's action i
    num_tokens: torch.Tensor  # [S, K]
    max_actions: int


def _normalize(
    logprobs: torch.Tensor, num_tokens: torch.Tensor, num_words: torch.Tensor, how: str
) -> torch.Tensor:
    if how == "none":
        return logprobs
    count = num_tokens if how == "token" else num_words
    return logprobs / count.clamp(min=1).to(logprobs.dtype)


def action_scores(
    logprobs: torch.Tensor,
    num_tokens: torch.Tensor,
    hidden: torch.Tensor,
    actions: Sequence[Sequence[str]],
    normalization: Normalization,
) -> ActionScores:
    """:class:`ActionScores` from ``[B, K]`` joint log-probabilities and token counts (0 at padding):
    normalized as ``normalization`` says, after a check that every real action's log-probability is finite
    (a ValueError naming the environment and action otherwise)."""
    mask = num_tokens > 0
    bad = (~torch.isfinite(logprobs) & mask).nonzero().tolist()
    if bad:
        where = ", ".join(f"environment {b} action {actions[b][i]!r}" for b, i in bad[:5])
        raise ValueError(
            f"non-finite log-probabilities for {where}: the model produced NaN or inf (an fp16 overflow, "
            "say). Load it in float32 or bfloat16."
        )
    num_words = torch.zeros_like(num_tokens)
    for b, env_actions in enumerate(actions):
        num_words[b, : len(env_actions)] = torch.tensor([len(a.split()) for a in env_actions])
    scores = _normalize(logprobs, num_tokens, num_words, normalization).masked_fill(~mask, float("-inf"))
    return ActionScores(logprobs=logprobs, scores=scores, mask=mask, num_tokens=num_tokens, hidden=hidden)


class ActionScorer:
    """Score every valid action of a batch of environments with a causal LM, prefix-shared.

    Args:
        model: a causal LM (``transformers`` or a PEFT model around one) with a decoder reachable through
            ``get_decoder()`` and an LM head through ``get_output_embeddings()``.
        tokenizer: its tokenizer.
        normalization: ``"word"`` (TWOSOME's best: divide by ``len(action.split())``), ``"token"`` (by the
            action's token count) or ``"none"`` (the joint log-probability).
        tokenization_cache_size: (prompt, actions) pairs whose tokenization is kept; a PPO update scores
            the same pairs as the rollout that made them.
        reuse_states: run each distinct (prompt, actions) pair of a batch through the model once and index
            the result back to its copies (the gradients sum over them exactly as if each were scored on its
            own); False runs every row, the speed ablation.
        max_actions_per_forward: pack at most this many of a state's actions into one sequence; a state
            with more is scored in chunks, each a sequence of the prompt and its share of the actions, so
            the attention's memory stays bounded where states offer hundreds or thousands of actions
            (ScienceWorld). Scores and gradients equal the unchunked ones; the prompt is encoded once per
            chunk. None: every action of a state in one sequence.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        normalization: Normalization = "word",
        *,
        tokenization_cache_size: int = 8192,
        reuse_states: bool = True,
        max_actions_per_forward: int | None = None,
    ):
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization={normalization!r}; use one of {NORMALIZATIONS}.")
        self.model = model
        self.tokenizer = tokenizer
        self.normalization = normalization
        self.reuse_states = reuse_states
        if max_actions_per_forward is not None and max_actions_per_forward < 1:
            raise ValueError(
                f"max_actions_per_forward={max_actions_per_forward}; use None or a positive count."
            )
        self.max_actions_per_forward = max_actions_per_forward
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.decoder = base.get_decoder()
        self.lm_head = base.get_output_embeddings()
        config = base.config
        self.max_positions = getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", None
        )
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._tokenize = functools.lru_cache(maxsize=tokenization_cache_size)(self._tokenize_uncached)
        self._warned_boundary = False

    # -- tokenization --------------------------------------------------------------------------------
    def _tokenize_uncached(self, prompt: str, actions: tuple[str, ...]) -> tuple[list[int], list[list[int]]]:
        """The prompt's token ids and each action's token ids as they follow the prompt."""
        prompt_ids, action_ids, merged = action_token_ids(self.tokenizer, prompt, actions)
        if merged and not self._warned_boundary:
            warnings.warn(
                f"the tokenizer merges tokens across the prompt/action boundary (action {merged[0]!r}); "
                "scoring the standalone tokens of ' ' + action after the prompt's own tokens.",
                stacklevel=4,
            )
            self._warned_boundary = True
        return prompt_ids, action_ids

    # -- packing -------------------------------------------------------------------------------------
    def _pack(
        self,
        prompts: Sequence[str],
        actions: Sequence[Sequence[str]],
        env_names: Sequence[int] | None = None,
    ) -> _Batch:
        """Pack the batch (see :class:`_Batch`); ``env_names[b]`` is state ``b``'s environment index in the
        caller's batch (errors name it)."""
        max_actions = max([1, *(len(a) for a in actions)])
        chunked = self.max_actions_per_forward is not None
        chunk = self.max_actions_per_forward or max_actions
        prompt_rows: list[list[int]] = []
        rows, positions, segments, row_state = [], [], [], []
        # Where a hidden state sits, as (prompt row or row, position), until the rows' padded lengths are
        # known: ("p", s, t) for prompt row s, ("r", r, t) for row r.
        prompt_last: list[tuple[str, int, int]] = []
        token_source: list[tuple[str, int, int]] = []
        token_target, token_action = [], []
        num_tokens = torch.zeros(len(prompts), max_actions, dtype=torch.long)
        for b, (prompt, env_actions) in enumerate(zip(prompts, actions, strict=True)):
            prompt_ids, action_ids = self._tokenize(prompt, tuple(env_actions))
            p = len(prompt_ids)
            longest = max((len(ids) for ids in action_ids), default=0)
            if self.max_positions is not None and p + longest > self.max_positions:
                raise ValueError(
                    f"environment {b if env_names is None else env_names[b]}: the prompt ({p} tokens) plus its "
                    f"longest action ({longest} tokens) exceeds "
                    f"the model's context of {self.max_positions} positions; shorten the prompt. Nothing is "
                    "truncated silently."
                )
            if chunked:
                prompt_rows.append(list(prompt_ids))
                prompt_last.append(("p", b, p - 1))
            else:
                prompt_last.append(("r", len(rows), p - 1))
            for first in range(0, len(action_ids), chunk):
                r = len(rows)
                row = [] if chunked else list(prompt_ids)
                pos = [] if chunked else list(range(p))
                seg = [] if chunked else [0] * p
                for i, ids in enumerate(action_ids[first : first + chunk], start=first):
                    start = len(row)
                    row += ids
                    pos += range(p, p + len(ids))
                    seg += [i - first + 1] * len(ids)
                    # Token t of the action is predicted from the position before it: the prompt's last token
                    # for t = 0, else the action's own token t - 1.
                    token_source += [
                        prompt_last[-1],
                        *(("r", r, t) for t in range(start, start + len(ids) - 1)),
                    ]
                    token_target += ids
                    token_action += [b * max_actions + i] * len(ids)
                    num_tokens[b, i] = len(ids)
                rows.append(row)
                positions.append(pos)
                segments.append(seg)
                row_state.append(b)
            if not action_ids and not chunked:  # a state without actions: its prompt row only
                rows.append(list(prompt_ids))
                positions.append(list(range(p)))
                segments.append([0] * p)
                row_state.append(b)

        def padded(values: list[list[int]], fill: int, length: int) -> torch.Tensor:
            return torch.tensor([v + [fill] * (length - len(v)) for v in values], dtype=torch.long).view(
                len(values), length
            )

        def packed(ids: list[list[int]], pos: list[list[int]], seg: list[list[int]]) -> _Rows:
            length = max([0, *(len(v) for v in ids)])
            return _Rows(
                padded(ids, self.pad_token_id, length), padded(pos, 0, length), padded(seg, -1, length)
            )

        prompt_block = None
        if chunked:
            prompt_block = packed(
                prompt_rows, [list(range(len(v))) for v in prompt_rows], [[0] * len(v) for v in prompt_rows]
            )
        row_block = packed(rows, positions, segments)
        prompt_width, row_width = (
            (prompt_block.input_ids.shape[1] if prompt_block else 0),
            row_block.input_ids.shape[1],
        )
        offset = len(prompt_rows) * prompt_width

        def flat(places: list[tuple[str, int, int]]) -> torch.Tensor:
            return torch.tensor(
                [
                    row * prompt_width + t if kind == "p" else offset + row * row_width + t
                    for kind, row, t in places
                ],
                dtype=torch.long,
            )

        return _Batch(
            rows=row_block,
            prompts=prompt_block,
            row_state=torch.tensor(row_state, dtype=torch.long),
            prompt_last=flat(prompt_last),
            token_source=flat(token_source),
            token_target=torch.tensor(token_target, dtype=torch.long),
            token_action=torch.tensor(token_action, dtype=torch.long),
            num_tokens=num_tokens,
            max_actions=max_actions,
        )

    @staticmethod
    def attention_mask(
        segments: torch.Tensor, dtype: torch.dtype, num_queries: int | None = None
    ) -> torch.Tensor:
        """``[B, 1, Q, L]`` additive mask of the last ``Q = num_queries`` positions (all ``L`` by default) over
        the ``L`` keys: 0 where a query may attend to a key, the dtype's min elsewhere.

        A query attends to earlier keys of the prompt (segment 0) and of its own segment. Padding keys are
        never attended to; every position attends to itself, so that no row is fully masked (a softmax
        over nothing is NaN, and NaN leaks into gradients even where the output is unused).
        """
        length = segments.shape[1]
        num_queries = length if num_queries is None else num_queries
        key_index = torch.arange(length, device=segments.device)
        query_index = key_index[length - num_queries :]
        causal = query_index[:, None] >= key_index[None, :]
        query, key = segments[:, length - num_queries :, None], segments[:, None, :]
        allowed = causal & (key >= 0) & ((key == 0) | (key == query))
        allowed |= query_index[:, None] == key_index[None, :]
        mask = torch.zeros(allowed.shape, dtype=dtype, device=segments.device)
        return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]

    def _hidden_table(self, batch: _Batch) -> torch.Tensor:
        """``[T, H]`` the decoder's last hidden states (after its final norm) of every row of ``batch``,
        flattened, prompt rows first (see :class:`_Batch`).

        Packed, the rows go through the decoder together. Chunked, the prompts go first, each encoded once,
        and the rows of actions then read the prompts' keys and values from the cache; both go in groups of
        rows of about the same length, each cut to its longest row and holding at most
        :data:`TOKENS_PER_CHUNKED_FORWARD` padded tokens (at least one row), and with gradients each group
        is checkpointed (its activations recomputed in backward), so the activations are held one group at
        a time."""
        embeddings = self.decoder.get_input_embeddings()
        device, dtype = embeddings.weight.device, embeddings.weight.dtype
        if not dtype.is_floating_point:  # quantized embeddings: the compute dtype is the LM head's
            dtype = self.lm_head.weight.dtype
        rows = batch.rows.to(device)
        if batch.prompts is None:
            return self.decoder(
                input_ids=rows[0],
                attention_mask=self.attention_mask(rows[1], dtype),
                position_ids=rows[2],
                use_cache=False,
            ).last_hidden_state.flatten(0, 1)

        if torch.is_grad_enabled() and any(
            getattr(module, "gradient_checkpointing", False) and module.training
            for module in self.decoder.modules()
        ):
            raise ValueError(
                "max_actions_per_forward needs the keys and values of each prompt, which the model's gradient "
                "checkpointing drops; the chunked scorer checkpoints its own groups of rows, so turn the "
                "model's off (model.gradient_checkpointing_disable()) or score without max_actions_per_forward."
            )
        prompts = batch.prompts.to(device)
        cache_argument = (
            "cache" if "cache" in inspect.signature(self.decoder.forward).parameters else "past_key_values"
        )

        def encode_prompts(input_ids, segments, position_ids):
            """A group of prompt rows cut to its longest: hidden states ``[G, P, H]`` and each layer's keys and
            values ``[G, heads, P, head_dim]``, padded back to the batch's ``P``."""
            width = int((segments >= 0).sum(-1).max())
            output = self.decoder(
                input_ids=input_ids[:, :width],
                attention_mask=self.attention_mask(segments[:, :width], dtype),
                position_ids=position_ids[:, :width],
                use_cache=True,
            )
            cache = getattr(output, "cache", None) or output.past_key_values
            missing = input_ids.shape[1] - width
            states = [nn.functional.pad(output.last_hidden_state, (0, 0, 0, missing))]
            for layer in cache.layers:
                states += [
                    nn.functional.pad(layer.keys, (0, 0, 0, missing)),
                    nn.functional.pad(layer.values, (0, 0, 0, missing)),
                ]
            return tuple(states)

        def decode_actions(input_ids, segments, position_ids, row_state, prompt_segments, *keys_values):
            """A group of action rows cut to its longest, attending to its states' prompts through their keys
            and values (cut to the group's longest prompt)."""
            width = int((segments >= 0).sum(-1).max())
            prompt_width = int((prompt_segments[row_state] >= 0).sum(-1).max())
            cache = DynamicCache(
                ddp_cache_data=[
                    (
                        keys_values[i][row_state, :, :prompt_width],
                        keys_values[i + 1][row_state, :, :prompt_width],
                    )
                    for i in range(0, len(keys_values), 2)
                ]
            )
            keys = torch.cat([prompt_segments[row_state, :prompt_width], segments[:, :width]], dim=1)
            hidden = self.decoder(
                input_ids=input_ids[:, :width],
                attention_mask=self.attention_mask(keys, dtype, num_queries=width),
                position_ids=position_ids[:, :width],
                use_cache=True,
                **{cache_argument: cache},
            ).last_hidden_state
            return nn.functional.pad(hidden, (0, 0, 0, input_ids.shape[1] - width))

        prompt_states = self._grouped(encode_prompts, prompts, device)  # (hidden, keys_0, values_0, ...)
        table = [prompt_states[0].flatten(0, 1)]
        if rows[0].shape[0]:
            shared = (prompts[1], *prompt_states[1:])
            table.append(
                self._grouped(decode_actions, [*rows, batch.row_state.to(device)], device, shared).flatten(
                    0, 1
                )
            )
        return torch.cat(table)

    @staticmethod
    def _grouped(
        function: Callable[..., Any],
        tensors: Sequence[torch.Tensor],
        device: torch.device,
        shared: Sequence[torch.Tensor] = (),
    ) -> Any:
        """``function`` over groups of the ``R`` rows of ``tensors`` (the first two being ``[R, L]`` input ids
        and segments) by length (:func:`_groups_by_length`); its output (a tensor, or a tuple of tensors) with
        the groups' rows concatenated back in the rows' order. ``shared`` tensors go whole to every call."""
        groups = [
            rows.to(device)
            for rows in _groups_by_length((tensors[1] >= 0).sum(-1), TOKENS_PER_CHUNKED_FORWARD)
        ]
        outputs = _in_groups(function, tensors, groups, shared)
        order = torch.argsort(torch.cat(groups))  # back to the batch's row order
        if isinstance(outputs[0], tuple):
            return tuple(torch.cat(parts)[order] for parts in zip(*outputs, strict=True))
        return torch.cat(outputs)[order]

    # -- scoring -------------------------------------------------------------------------------------
    def score(self, prompts: Sequence[str], actions: Sequence[Sequence[str]]) -> ActionScores:
        """Score each environment's valid actions; runs with gradients unless the caller disables them.

        Each distinct ``(prompt, actions)`` pair of the batch is computed once and shared by its copies.

        Args:
            prompts: ``B`` prompt texts.
            actions: ``B`` lists of valid action texts (non-empty, unique, str), each of its own length.

        Returns:
            :class:`ActionScores` padded to ``K = max(len(a) for a in actions)``.

        Raises:
            ValueError / TypeError: naming the environment index, for an empty, duplicated or non-str
            action list, mismatched lengths, a prompt longer than the model's context, or non-finite
            log-probabilities.
        """
        check_batch(prompts, actions)
        states, inverse, first_rows = unique_states(prompts, actions, self.reuse_states)
        batch = self._pack([prompt for prompt, _ in states], [list(acts) for _, acts in states], first_rows)
        table = self._hidden_table(batch)
        device = table.device
        token_logprobs = self._token_logprobs(
            table[batch.token_source.to(device)], batch.token_target.to(device)
        )
        logprobs = torch.zeros(len(states) * batch.max_actions, dtype=torch.float32, device=device)
        logprobs = logprobs.index_add(0, batch.token_action.to(device), token_logprobs)
        prompt_hidden = table[batch.prompt_last.to(device)]

        # Back to one row per environment: indexing, so a shared row's gradient sums over its copies.
        rows = inverse.to(device)
        logprobs = logprobs.view(len(states), batch.max_actions)[rows]
        prompt_hidden = prompt_hidden[rows]
        num_tokens = batch.num_tokens.to(device)[rows]
        return action_scores(logprobs, num_tokens, prompt_hidden, actions, self.normalization)

    def _token_logprobs(self, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[N]`` log p(target | hidden) of the action tokens, through the LM head. Its logits are ``[N, V]``
        (V the vocabulary): with ``max_actions_per_forward`` they are computed
        :data:`TOKENS_PER_CHUNKED_FORWARD` tokens at a time, checkpointed with gradients, since for thousands
        of action tokens they outweigh the decoder's activations."""

        def logprobs(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            logits = self.lm_head(h).float()
            return logits.gather(-1, t[:, None]).squeeze(-1) - logits.logsumexp(-1)

        if self.max_actions_per_forward is None:
            return logprobs(hidden, target)
        return _in_slices(logprobs, (hidden, target), TOKENS_PER_CHUNKED_FORWARD)

    def prompt_hidden(self, prompts: Sequence[str]) -> torch.Tensor:
        """``[B, H]`` the last hidden state at each prompt's last token, without scoring any action; each
        distinct prompt computed once."""
        states, inverse, _ = unique_states(prompts, [() for _ in prompts], self.reuse_states)
        batch = self._pack([prompt for prompt, _ in states], [[] for _ in states])
        table = self._hidden_table(batch)
        return table[batch.prompt_last.to(table.device)][inverse.to(table.device)]


def naive_action_logprobs(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    actions: Sequence[Sequence[str]],
    *,
    batch_size: int = 64,
) -> torch.Tensor:
    """``[B, K]`` joint log-probabilities the plain way: one ``prompt + " " + action`` sequence per action.

    The reference that :class:`ActionScorer` must equal (TWOSOME's reference code works this way). Slow:
    the prompt is encoded once per action and the LM head runs at every position. Sequences are padded
    on the tokenizer's side, with position ids from the attention mask so either side gives the same
    result. Kept for tests and benchmarks.
    """
    max_actions = max(len(a) for a in actions)
    logprobs = torch.zeros(len(prompts), max_actions)
    pairs = [
        (b, i, prompt, action)
        for b, (prompt, acts) in enumerate(zip(prompts, actions, strict=True))
        for i, action in enumerate(acts)
    ]
    device = next(model.parameters()).device
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        encoded = tokenizer([f"{p} {a}" for _, _, p, a in chunk], return_tensors="pt", padding=True)
        prompt_lengths = [len(tokenizer(p)["input_ids"]) for _, _, p, _ in chunk]
        attention = encoded["attention_mask"]
        position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
        logits = model(
            input_ids=encoded["input_ids"].to(device),
            attention_mask=attention.to(device),
            position_ids=position_ids.to(device),
        ).logits.float()
        token_logprobs = torch.log_softmax(logits[:, :-1], dim=-1).gather(
            -1, encoded["input_ids"][:, 1:, None].to(device)
        )
        for row, ((b, i, _, _), prompt_length) in enumerate(zip(chunk, prompt_lengths, strict=True)):
            real = attention[row].nonzero().squeeze(-1)
            first, last = int(real[0]), int(real[-1])
            # Action tokens sit at [first + prompt_length, last]; each is predicted from the position before.
            logprobs[b, i] = token_logprobs[row, first + prompt_length - 1 : last, 0].sum().cpu()
    return logprobs
