"""PPO's arithmetic on hand-computed numbers."""

import math

import pytest
import torch

from trl_embodied.trainer.ppo import (
    clipped_policy_loss,
    clipped_value_loss,
    compute_gae,
    explained_variance,
    kl_to_reference,
    masked_mean,
    next_state_values,
    normalize_advantages,
)


def column(*values):
    """A ``[T, 1]`` tensor: one environment."""
    return torch.tensor(values, dtype=torch.float64)[:, None]


def flags(*values):
    return torch.tensor(values, dtype=torch.bool)[:, None]


def test_gae_one_step_per_transition_by_hand():
    gamma, lam = 0.9, 0.8
    rewards, values = column(1.0, 0.0, 2.0), column(0.5, 1.0, 1.5)
    next_values = column(1.0, 1.5, 3.0)  # the last is the bootstrap value
    advantages, returns = compute_gae(
        rewards,
        values,
        next_values,
        flags(0, 0, 0),
        flags(0, 0, 0),
        column(1, 1, 1),
        gamma=gamma,
        gae_lambda=lam,
    )
    d2 = 2.0 + 0.9 * 3.0 - 1.5  # 3.2
    d1 = 0.0 + 0.9 * 1.5 - 1.0  # 0.35
    d0 = 1.0 + 0.9 * 1.0 - 0.5  # 1.4
    a2, a1 = d2, d1 + 0.9 * 0.8 * d2
    a0 = d0 + 0.9 * 0.8 * a1
    assert advantages[:, 0].tolist() == pytest.approx([a0, a1, a2])
    assert returns[:, 0].tolist() == pytest.approx([a0 + 0.5, a1 + 1.0, a2 + 1.5])


def test_next_state_values_follow_the_rollout_and_stop_at_episode_ends():
    values = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])  # [T=3, N=2]
    final_values = torch.full((3, 2), -1.0)
    final_values[1, 0] = 7.0  # env 0's episode was cut after step 1: its final state's value
    ended = torch.zeros(3, 2, dtype=torch.bool)
    ended[1, 0] = True
    bootstrap = torch.tensor([4.0, 40.0])
    expected = torch.tensor([[2.0, 20.0], [7.0, 30.0], [4.0, 40.0]])
    assert torch.equal(next_state_values(values, final_values, bootstrap, ended), expected)


def test_gae_discounts_macro_steps_by_gamma_to_the_k():
    gamma, lam = 0.99, 0.95
    advantages, _ = compute_gae(
        column(0.0, 1.0),
        column(0.2, 0.4),
        column(0.4, 0.7),
        flags(0, 0),
        flags(0, 0),
        column(5, 3),
        gamma=gamma,
        gae_lambda=lam,
    )
    d1 = 1.0 + 0.99**3 * 0.7 - 0.4
    d0 = 0.0 + 0.99**5 * 0.4 - 0.2
    assert advantages[:, 0].tolist() == pytest.approx([d0 + 0.99**5 * 0.95 * d1, d1])


def test_gae_stops_at_terminal_states_and_bootstraps_truncations():
    gamma, lam = 0.5, 1.0
    # Step 0 terminates (no bootstrap); step 1 starts a new episode that is truncated at step 1
    # (bootstrap from the final state's value 4.0); step 2 is a new episode's first step.
    rewards, values = column(1.0, 1.0, 1.0), column(0.0, 0.0, 0.0)
    next_values = column(10.0, 4.0, 2.0)
    advantages, _ = compute_gae(
        rewards,
        values,
        next_values,
        flags(1, 0, 0),
        flags(0, 1, 0),
        column(1, 1, 1),
        gamma=gamma,
        gae_lambda=lam,
    )
    assert advantages[:, 0].tolist() == pytest.approx([1.0, 1.0 + 0.5 * 4.0, 1.0 + 0.5 * 2.0])


def test_gae_runs_environments_independently():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    kwargs = dict(gamma=0.9, gae_lambda=0.95)
    zeros, no = torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.bool)
    both, _ = compute_gae(rewards, zeros, zeros, no, no, torch.ones(2, 2), **kwargs)
    for n in range(2):
        alone, _ = compute_gae(
            rewards[:, n : n + 1],
            zeros[:, :1],
            zeros[:, :1],
            no[:, :1],
            no[:, :1],
            torch.ones(2, 1),
            **kwargs,
        )
        assert torch.allclose(both[:, n], alone[:, 0])


def test_clipped_policy_loss_by_hand():
    old = torch.log(torch.tensor([0.5, 0.5, 0.5]))
    new = torch.log(torch.tensor([0.75, 0.5, 0.25]))  # ratios 1.5, 1.0, 0.5
    advantages = torch.tensor([1.0, 2.0, -1.0])
    output = clipped_policy_loss(new, old, advantages, clip_range=0.2)
    # min(1.5 * 1, 1.2 * 1) = 1.2; min(1 * 2, 1 * 2) = 2; min(0.5 * -1, 0.8 * -1) = -0.8
    assert output.loss.item() == pytest.approx(-(1.2 + 2.0 - 0.8) / 3)
    assert output.clip_fraction.item() == pytest.approx(2 / 3)
    expected_kl = ((1.5 - 1 - math.log(1.5)) + 0 + (0.5 - 1 - math.log(0.5))) / 3
    assert output.approx_kl.item() == pytest.approx(expected_kl, rel=1e-6)


def test_policy_loss_gradient_vanishes_where_clipped():
    old = torch.zeros(2)
    new = torch.log(torch.tensor([1.5, 1.1])).requires_grad_()
    clipped_policy_loss(new, old, torch.ones(2), clip_range=0.2).loss.backward()
    assert new.grad[0] == 0.0 and new.grad[1] == pytest.approx(-1.1 / 2)


def test_identical_policies_have_zero_kl_and_no_clipping():
    logprobs = torch.log(torch.tensor([0.2, 0.7]))
    output = clipped_policy_loss(logprobs, logprobs, torch.tensor([1.0, -1.0]), clip_range=0.2)
    assert output.approx_kl.item() == 0.0 and output.clip_fraction.item() == 0.0


def test_clipped_value_loss_by_hand():
    old, new, returns = torch.tensor([1.0, 1.0]), torch.tensor([2.0, 1.1]), torch.tensor([0.0, 3.0])
    # env 0: unclipped (2 - 0)^2 = 4, clipped (1.2 - 0)^2 = 1.44 -> 4
    # env 1: unclipped (1.1 - 3)^2 = 3.61, clipped (1.1 - 3)^2 -> 3.61
    assert clipped_value_loss(new, old, returns, 0.2).item() == pytest.approx(0.5 * (4 + 3.61) / 2)
    old, new, returns = torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([3.0])
    # unclipped (2 - 3)^2 = 1, clipped (1.2 - 3)^2 = 3.24: the max keeps the pessimistic one
    assert clipped_value_loss(new, old, returns, 0.2).item() == pytest.approx(0.5 * 3.24)
    assert clipped_value_loss(new, old, returns, None).item() == pytest.approx(0.5)


def test_normalize_advantages_and_explained_variance():
    normalized = normalize_advantages(torch.tensor([1.0, 2.0, 3.0, 6.0]))
    assert normalized.mean().item() == pytest.approx(0.0, abs=1e-7)
    assert normalized.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-6)
    returns = torch.tensor([1.0, 2.0, 3.0])
    assert explained_variance(returns, returns) == 1.0
    assert explained_variance(torch.full((3,), 2.0), returns) == pytest.approx(0.0)
    assert math.isnan(explained_variance(returns, torch.ones(3)))


def test_a_masked_row_counts_in_no_term_and_gets_no_gradient():
    new = torch.tensor([-0.65, -1.0, -0.2], requires_grad=True)
    old = torch.tensor([-0.7, 0.0, -0.3])  # the middle row was never sampled: its old log-prob is a filler
    advantages = torch.tensor([1.0, 5.0, -2.0])
    mask = torch.tensor([True, False, True])
    masked = clipped_policy_loss(new, old, advantages, 0.2, mask)
    kept = clipped_policy_loss(new[[0, 2]], old[[0, 2]], advantages[[0, 2]], 0.2)
    assert torch.allclose(masked.loss, kept.loss) and torch.allclose(masked.approx_kl, kept.approx_kl)
    assert torch.allclose(masked.clip_fraction, kept.clip_fraction)
    masked.loss.backward()
    assert new.grad[1] == 0 and new.grad[0] != 0
    assert masked_mean(torch.tensor([1.0, 2.0]), torch.tensor([False, False])) == 0.0


def test_kl_to_reference_over_valid_actions_by_hand():
    log_policy = torch.log(torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]))  # row 0: two valid actions
    reference = torch.log(torch.tensor([[0.25, 0.75, 0.0], [0.2, 0.3, 0.5]]))
    valid = torch.tensor([[True, True, False], [True, True, True]])
    kl = kl_to_reference(log_policy, reference, valid)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl.tolist() == pytest.approx([expected, 0.0], abs=1e-6)
