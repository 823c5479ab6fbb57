"""PPO's arithmetic as pure functions, read top to bottom like CleanRL's single-file PPO.

Time-major tensors: ``[T, N]`` is T decision steps of N environments. Macro actions last several
primitive steps, so each transition carries its own discount ``gamma ** primitive_steps``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def next_state_values(
    values: torch.Tensor, final_values: torch.Tensor, bootstrap: torch.Tensor, ended: torch.Tensor
) -> torch.Tensor:
    """``[T, N]`` V(s_{t+1}) for :func:`compute_gae`, from what a rollout measured.

    Args:
        values: ``[T, N]`` V(s_t) along the rollout.
        final_values: ``[T, N]`` where an episode ended at step t, the value of its final state (read by
            :func:`compute_gae` only where it was truncated); elsewhere ignored.
        bootstrap: ``[N]`` the value of each env's state after the rollout's last step.
        ended: ``[T, N]`` the episode ended at step t (terminated or truncated).

    Each step's next value is the following step's value, the bootstrap after the last step; where the
    episode ended, the final state's value instead (the next row belongs to the episode after the reset).
    """
    following = torch.cat([values[1:], bootstrap.reshape(1, -1)])
    return torch.where(ended, final_values, following)


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    primitive_steps: torch.Tensor,
    *,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over a rollout, for macro actions.

    Args:
        rewards: ``[T, N]`` reward of each transition.
        values: ``[T, N]`` V(s_t).
        next_values: ``[T, N]`` V(s_{t+1}) of the state the transition reached: the next step's state, or
            at an episode end the final state before the reset (used when the episode was truncated,
            so that running out of time is not mistaken for a terminal state); after the rollout's last
            step, the bootstrap value.
        terminated: ``[T, N]`` the transition ended the episode in a terminal state (no bootstrap).
        truncated: ``[T, N]`` the episode was cut by a time limit (bootstrap from ``next_values``).
        primitive_steps: ``[T, N]`` the primitive steps ``k`` the transition took: it is discounted by
            ``gamma ** k``.
        gamma, gae_lambda: the discount per primitive step and GAE's lambda per decision step.

    Returns:
        ``(advantages, returns)``, both ``[T, N]``; ``returns = advantages + values``.

    delta_t = r_t + gamma^k_t * V(s_{t+1}) * (1 - terminated_t) - V(s_t)
    A_t     = delta_t + gamma^k_t * lambda * (1 - done_t) * A_{t+1},  done = terminated or truncated
    """
    discount = gamma ** primitive_steps.to(values.dtype)
    not_terminal = 1.0 - terminated.to(values.dtype)
    not_done = 1.0 - (terminated | truncated).to(values.dtype)
    deltas = rewards + discount * next_values * not_terminal - values
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[0])
    for t in reversed(range(values.shape[0])):
        running = deltas[t] + discount[t] * gae_lambda * not_done[t] * running
        advantages[t] = running
    return advantages, advantages + values


def normalize_advantages(
    advantages: torch.Tensor, reference: torch.Tensor | None = None, eps: float = 1e-8
) -> torch.Tensor:
    """Shift and scale ``advantages`` to zero mean and unit standard deviation of ``reference``.

    ``reference`` is the batch the statistics come from (the global batch gathered from every process);
    by default ``advantages`` itself.
    """
    reference = advantages if reference is None else reference
    return (advantages - reference.mean()) / (reference.std(unbiased=False) + eps)


@dataclass
class PolicyLossOutput:
    loss: torch.Tensor  # scalar, to minimize
    approx_kl: torch.Tensor  # scalar, no gradient
    clip_fraction: torch.Tensor  # scalar, no gradient


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The mean of ``values`` where ``mask`` is True (all of them without a mask; 0 where none is)."""
    if mask is None:
        return values.mean()
    weights = mask.to(values.dtype)
    return (torch.where(mask, values, torch.zeros_like(values)) * weights).sum() / weights.sum().clamp(
        min=1.0
    )


def clipped_policy_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    clip_range: float,
    mask: torch.Tensor | None = None,
) -> PolicyLossOutput:
    """PPO's clipped surrogate, ``-mean(min(r A, clip(r, 1 - eps, 1 + eps) A))`` with ``r = pi / pi_old``.

    ``approx_kl`` is the low-variance estimator of KL(pi_old || pi): ``mean((r - 1) - log r)``. ``mask``
    (``[B]`` bool) keeps the rows that count (a group estimator masks the rows it could not fill with scored steps).
    """
    log_ratio = new_logprobs - old_logprobs
    if mask is not None:  # a dropped row's old log-prob was never sampled: keep its ratio finite
        log_ratio = torch.where(mask, log_ratio, torch.zeros_like(log_ratio))
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * advantages
    loss = -masked_mean(torch.min(unclipped, clipped), mask)
    with torch.no_grad():
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask)
        clip_fraction = masked_mean(((ratio - 1.0).abs() > clip_range).float(), mask)
    return PolicyLossOutput(loss=loss, approx_kl=approx_kl, clip_fraction=clip_fraction)


def kl_to_reference(
    log_policy: torch.Tensor, reference_log_policy: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """``[B]`` KL(pi || pi_ref) over each state's valid actions: ``sum_a pi(a) (log pi(a) - log pi_ref(a))``.

    ``log_policy``, ``reference_log_policy``: ``[B, K]`` (-inf at padding); ``valid``: ``[B, K]`` bool."""
    difference = torch.where(valid, log_policy - reference_log_policy, torch.zeros_like(log_policy))
    return (log_policy.exp() * difference).sum(-1)


def clipped_value_loss(
    new_values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip_range_value: float | None
) -> torch.Tensor:
    """``0.5 * mean(max((V - R)^2, (V_clipped - R)^2))``, V_clipped kept within ``clip_range_value`` of the
    rollout's values; plain ``0.5 * mean((V - R)^2)`` when ``clip_range_value`` is None."""
    unclipped = (new_values - returns).pow(2)
    if clip_range_value is None:
        return 0.5 * unclipped.mean()
    clipped_values = old_values + (new_values - old_values).clamp(-clip_range_value, clip_range_value)
    return 0.5 * torch.max(unclipped, (clipped_values - returns).pow(2)).mean()


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """``1 - Var(R - V) / Var(R)``: 1 is a perfect critic, 0 no better than a constant; NaN if Var(R) = 0."""
    variance = returns.var(unbiased=False)
    if variance == 0:
        return float("nan")
    return float(1.0 - (returns - values).var(unbiased=False) / variance)
