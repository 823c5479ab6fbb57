"""GRPO, RLOO and GiGPO advantages on hand-built episodes, against a direct computation with statistics."""

from statistics import mean, stdev

import pytest

from trl_embodied.trainer.group_advantages import EPS, Episode, group_advantages

GAMMA = 0.5


def flat(rows):
    """Nested per-episode rows as one list, with the row lengths (pytest.approx compares flat lists)."""
    return [x for row in rows for x in row], [len(row) for row in rows]


def assert_rows_close(actual, expected):
    assert flat(actual)[1] == flat(expected)[1]
    assert flat(actual)[0] == pytest.approx(flat(expected)[0])


def hand_built() -> list[Episode]:
    """Group "a": three episodes from the same start; group "b": two with equal returns."""
    return [
        Episode("a", rewards=[0.0, 0.0, 1.0], states=["s0", "s1", "s2"]),  # returns-to-go 0.25, 0.5, 1
        Episode("a", rewards=[0.0, 0.0, 0.0], states=["s0", "s1", "s1"]),  # s1 twice in one episode
        Episode("a", rewards=[0.0, 0.0], states=["s0", "s3"]),
        Episode("b", rewards=[2.0], states=["s0"]),  # the same state name in another group: not pooled
        Episode("b", rewards=[1.0, 1.0], states=["s0", "s4"]),
    ]


def normalized(value, values):
    return (value - mean(values)) / (stdev(values) + EPS)


def test_grpo_normalizes_each_episode_return_within_its_group():
    advantages, stats = group_advantages(hand_built(), "grpo")
    a = [1.0, 0.0, 0.0]
    expected = [[normalized(r, a)] * n for r, n in zip(a, [3, 3, 2], strict=True)] + [[0.0], [0.0, 0.0]]
    assert_rows_close(advantages, expected)
    assert stats["advantages/mean"] == pytest.approx(mean(x for row in expected for x in row))


def test_rloo_subtracts_the_mean_of_the_other_episodes():
    advantages, _ = group_advantages(hand_built(), "rloo")
    assert_rows_close(advantages, [[1.0] * 3, [-0.5] * 3, [-0.5] * 2, [0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="RLOO needs at least 2 episodes a group; group 'c' has 1"):
        group_advantages([Episode("c", rewards=[1.0], states=["s"])], "rloo")


def test_gigpo_adds_the_return_to_go_normalized_among_steps_from_the_same_state():
    advantages, stats = group_advantages(hand_built(), "gigpo", gamma=GAMMA, step_advantage_weight=0.5)
    episode_term, _ = group_advantages(hand_built(), "grpo")
    s0 = [0.25, 0.0, 0.0]  # the three episodes of group a start in s0
    s1 = [0.5, 0.0, 0.0]  # episode 1 once, episode 2 twice
    step_term = [
        [normalized(0.25, s0), normalized(0.5, s1), 0.0],  # s2: no other step of the group acts from it
        [normalized(0.0, s0), normalized(0.0, s1), normalized(0.0, s1)],
        [normalized(0.0, s0), 0.0],
        [normalized(2.0, [2.0, 1.0 + GAMMA])],  # group b's s0: returns-to-go 2 and 1 + 0.5 * 1
        [normalized(1.0 + GAMMA, [2.0, 1.0 + GAMMA]), 0.0],
    ]
    expected = [
        [e + 0.5 * s for e, s in zip(e_row, s_row, strict=True)]
        for e_row, s_row in zip(episode_term, step_term, strict=True)
    ]
    assert_rows_close(advantages, expected)
    sizes = [3, 3, 1, 3, 3, 3, 3, 1, 2, 2, 1]  # per step, in episode order
    assert stats["advantages/anchor_group_size"] == pytest.approx(mean(sizes))
    assert stats["advantages/anchored_share"] == pytest.approx(sum(s >= 2 for s in sizes) / len(sizes))


def test_macro_actions_discount_by_their_primitive_steps():
    (episode,) = [Episode("a", rewards=[0.0, 1.0], states=["x", "y"], primitive_steps=[3, 1])]
    assert episode.returns_to_go(GAMMA) == pytest.approx([GAMMA**3 * 1.0, 1.0])


def test_malformed_input_is_named():
    with pytest.raises(ValueError, match="3 rewards but 2 states"):
        Episode("a", rewards=[0.0, 0.0, 1.0], states=["s0", "s1"])
    with pytest.raises(ValueError, match="estimator='ppo'; use one of"):
        group_advantages(hand_built(), "ppo")


@pytest.mark.parametrize("estimator", ["grpo", "rloo", "gigpo"])
def test_the_statistics_are_the_ones_every_process_logs(estimator):
    from trl_embodied.trainer.group_advantages import GROUP_STATISTICS

    _, stats = group_advantages(hand_built(), estimator, gamma=GAMMA)
    assert set(stats) == set(GROUP_STATISTICS[estimator])
