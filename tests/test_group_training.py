"""EmbodiedPPOTrainer with the critic-free group estimators (GRPO, RLOO, GiGPO) on tiny models."""

import math

import pytest
import torch

from trl_embodied import EmbodiedActorCritic
from trl_embodied.trainer.embodied_ppo_trainer import ROLLOUT_STATE_FILE, ROLLOUT_TENSORS_FILE
from trl_embodied.trainer.episode_rounds import EpisodeRounds
from trl_embodied.trainer.group_advantages import Episode, group_advantages
from trl_embodied.trainer.rollout_state import load_tree, save_tree

from .conftest import build_llama
from .test_trainer import make_trainer, trainable_state, win_probability
from .toy_envs import DoorEnv


@pytest.mark.parametrize("estimator", ["grpo", "rloo", "gigpo"])
def test_a_group_estimator_learns_the_rewarded_action_without_a_value_head(tmp_path, tokenizer, estimator):
    base_model = build_llama(len(tokenizer), init_std=0.1)
    trainer = make_trainer(
        tmp_path, tokenizer, base_model=base_model, max_steps=20, advantage_estimator=estimator, group_size=2
    )
    assert trainer.accelerator.unwrap_model(trainer.model).value_head is None
    assert [g["name"] for g in trainer.create_optimizer().param_groups] == ["actor"]
    before = win_probability(trainer)
    trainer.train()
    assert win_probability(trainer) > max(0.9, before), before
    logged = {key for row in trainer.state.log_history for key in row}
    assert {"advantages/mean", "rollout/episodes_in_groups"} <= logged
    assert not {"loss/value", "value/mean", "value/explained_variance"} & logged
    assert ("advantages/anchored_share" in logged) == (estimator == "gigpo")
    trainer.save_model(str(tmp_path / "saved"))
    assert not (tmp_path / "saved" / "value_head.safetensors").exists()
    reloaded = EmbodiedActorCritic.from_pretrained(
        tmp_path / "saved", base_model=build_llama(len(tokenizer), init_std=0.1), tokenizer=tokenizer
    )
    assert reloaded.value_head is None


def test_a_slot_runs_ahead_of_its_group_and_the_others_join_its_rounds_later():
    """No slot waits: one whose episode ended opens its group's next round (a new seed); the group's other
    slots join that round, with its seed, when their own episodes end, and a round is over when all have."""
    rounds = EpisodeRounds(2, group_size=2, first_seed=100)
    assert rounds.idle_slots() == [0, 1]
    assert rounds.begin(0) == rounds.begin(1) == 100 and rounds.idle_slots() == []
    assert rounds.record(0, {"k": 0}, episode_ended=True) == 101  # slot 0 runs ahead: rounds 1...
    assert rounds.record(0, {"k": 1}, episode_ended=True) == 102  # ...and 2
    assert rounds.record(1, {"k": 2}, episode_ended=False) is None
    assert not rounds.over
    assert rounds.record(1, {"k": 3}, episode_ended=True) == 101  # slot 1 joins round 1; round 0 is over
    assert rounds.over == [((0, 100), [[{"k": 0}], [{"k": 2}, {"k": 3}]])]
    assert rounds.record(1, {"k": 4}, episode_ended=True) == 102
    assert rounds.over[-1] == ((0, 101), [[{"k": 1}], [{"k": 4}]])
    assert [r["seed"] for r in rounds.open] == [102] and rounds.rounds_opened == 3
    restored = EpisodeRounds(2, group_size=2, first_seed=100)
    restored.load_state_dict(rounds.state_dict())
    assert restored.record(0, {"k": 5}, episode_ended=True) == 103  # the same seeds go on after a resume
    restored.drop(0)  # void rounds: both slots begin a new one together
    assert restored.idle_slots() == [0, 1] and restored.begin(1) == restored.begin(0) == 104


def test_a_critic_free_run_plays_its_whole_env_step_budget(tmp_path, tokenizer):
    """Episodes of different lengths in a group (a uniform policy walks through the door after 2 to 20
    steps) take no slot off play: the run takes every env step its budget gives."""
    steps_taken = []

    class CountedDoor(DoorEnv):
        def step(self, action):
            steps_taken.append(action)
            return super().step(action)

    trainer = make_trainer(
        tmp_path, tokenizer, env=CountedDoor, advantage_estimator="grpo", group_size=2, rollout_steps=16,
        total_env_steps=150,
    )  # fmt: skip

    def uniform_policy(prompts, actions):
        log_policy = torch.tensor([[-math.log(len(a))] * len(a) for a in actions])
        return log_policy, torch.zeros(len(prompts), 0)

    trainer._policy = uniform_policy
    trainer.train()
    lengths = [row["episode/length"] for row in trainer.state.log_history if "episode/length" in row]
    assert min(lengths) < max(lengths)  # the group's episodes ended at different steps
    assert trainer.args.num_envs * trainer.args.rollout_steps == 64
    assert len(steps_taken) == trainer._env_steps == 192 == trainer.state.log_history[-1]["env_steps"]


def play_rollouts(tmp_path, tokenizer, rollouts, **overrides):
    """A trainer on DoorEnv (episodes of up to 20 steps) with 2 groups of 2 slots playing ``rollouts``
    rollouts of 8 steps, each turned into its update's rows as the trainer does; the parameters stay as
    they are. Returns the trainer, each rollout, the rounds that ended in it, and each update's rows."""
    trainer = make_trainer(tmp_path, tokenizer, env=DoorEnv, group_size=2, rollout_steps=8, **overrides)
    trainer.slots = trainer._make_slots()
    trainer._rounds = trainer._new_rounds()
    played, ended, updates = [], [], []
    for _ in range(rollouts):
        played.append(trainer._play(8))
        ended.append(list(trainer._rounds.over))
        updates.append(trainer._group_transitions(played[-1]))
        trainer._micro_step += trainer.args.micro_steps_per_rollout  # the next iteration
    return trainer, played, ended, updates


def test_rounds_run_on_across_rollouts_and_each_step_is_learned_from_once(tmp_path, tokenizer):
    """Rounds are not bound to rollouts: a round the rollout's end cuts goes on in the next one, and when it
    ends, all its steps (with the log-probs they were sampled with) get the group advantages, once. No slot
    waits for its group: every slot takes a step at every decision step."""
    trainer, played, ended, updates = play_rollouts(tmp_path, tokenizer, 6, advantage_estimator="grpo")
    rounds = trainer._rounds
    for n, slot in enumerate(trainer.slots):  # each slot runs the episode of the round it joined
        assert slot.seed == rounds.round_of(n)["seed"]
    over = [key for rollout_rounds in ended for key, _ in rollout_rounds]
    seeds = [seed for _, seed in over] + [r["seed"] for r in rounds.open]
    assert len(set(seeds)) == len(seeds) > 2  # every round a new start
    assert all(len(members) == 2 and all(members) for r in ended for _, members in r)  # whole rounds

    # Every step the slots took, keyed by (prompt, chosen action, log-prob), in the order it was sampled.
    taken = [
        (rollout.prompts[t][n], int(rollout.chosen[t, n]), float(rollout.logprobs[t, n]), iteration)
        for iteration, rollout in enumerate(played)
        for t in range(8)
        for n in range(4)
    ]
    assert len(taken) == 6 * 8 * 4
    learned = [  # an earlier step's log-prob is recomputed (the proximal policy's; the parameters stayed)
        (prompt, int(chosen), round(float(logprob), 4))
        for update in updates
        for prompt, chosen, logprob, keep in zip(
            update["prompts"], update["chosen"], update["logprobs"], update["mask"], strict=True
        )
        if keep
    ]
    in_flight = [
        (s["prompt"], s["chosen"], round(s["logprob"], 4))
        for r in rounds.open
        for steps in r["steps"]
        for s in steps
    ]
    queued = [(s["prompt"], s["chosen"], round(s["logprob"], 4)) for s in rounds.queue]
    assert sorted(learned + queued + in_flight) == sorted((p, c, round(lp, 4)) for p, c, lp, _ in taken)
    # Some round ended a rollout after it began: its first steps were sampled an update earlier or more.
    assert any(
        step["iteration"] < k
        for k, over in enumerate(ended)
        for _, members in over
        for e in members
        for step in e
    )
    assert max(v for v in trainer._metrics["rollout/policy_lag"] if v == v) > 0  # logged (NaN: no rows)
    # The rows carry their rounds' advantages, computed on whole rounds; updates take them oldest first, up
    # to twice a rollout's row count (the rest wait in the queue), and fill up with masked rows to a multiple
    # of the rollout's 4 minibatches.
    scored = []
    for over in ended:
        episodes = [
            Episode(
                group=key,
                rewards=[s["reward"] for s in steps],
                states=[(s["prompt"], tuple(s["actions"])) for s in steps],
            )
            for key, members in over
            for steps in members
        ]
        scored += [a for row in group_advantages(episodes, "grpo")[0] for a in row] if episodes else []
    learned_advantages = []
    for update in updates:
        kept = int(update["mask"].sum())
        assert update["mask"][:kept].all() and not update["mask"][kept:].any()
        assert (update["advantages"][kept:] == 0).all() and kept <= 64
        assert len(update["prompts"]) == max(32, math.ceil(kept / 4) * 4)
        learned_advantages += update["advantages"][:kept].tolist()
    assert learned_advantages and not updates[0]["mask"].all()
    expected = learned_advantages + [s["advantage"] for s in rounds.queue]
    assert torch.allclose(torch.tensor(expected), torch.tensor(scored), atol=1e-6)


def test_steps_of_an_earlier_policy_are_learned_from_as_decoupled_ppo_does(tmp_path, tokenizer):
    """A step sampled before the last update: its ratio is taken against the current (proximal) policy, and
    its advantage weighted by proximal over behaviour probability, truncated at 1. A step of this rollout
    keeps its log-prob and its advantage."""
    trainer = make_trainer(
        tmp_path, tokenizer, env=DoorEnv, group_size=2, rollout_steps=8, advantage_estimator="grpo"
    )
    trainer.slots = trainer._make_slots()
    trainer._rounds = EpisodeRounds(4, group_size=2)
    rollout = trainer._play(8)
    trainer._rounds.over.clear()  # only the hand-made steps below are scored
    trainer._micro_step = 3 * trainer.args.micro_steps_per_rollout  # the update of iteration 3
    prompt, info = DoorEnv().reset()
    actions = info["valid_actions"]
    current = trainer._policy([prompt], [actions])[0][0]

    def step(chosen, behaviour, iteration):
        return dict(
            prompt=prompt, actions=actions, chosen=chosen, logprob=behaviour, reward=0.0, primitive_steps=1,
            iteration=iteration, advantage=2.0,
        )  # fmt: skip

    trainer._rounds.queue = [
        step(0, float(current[0]) + 0.5, iteration=1),  # the action has become less likely since
        step(1, float(current[1]) - 0.5, iteration=1),  # more likely since: the weight is truncated at 1
        step(2, float(current[2]), iteration=3),  # sampled in this rollout
    ]
    update = trainer._group_transitions(rollout)
    assert update["mask"].tolist() == [True] * 3 + [False] * 29
    assert torch.allclose(update["logprobs"][:3], current[:3], atol=1e-5)
    assert torch.allclose(update["advantages"][:3], torch.tensor([2.0 * math.exp(-0.5), 2.0, 2.0]), atol=1e-5)
    assert trainer._metrics["rollout/policy_lag"][-1] == pytest.approx(4 / 3)


def test_an_update_drains_a_long_queue_in_larger_minibatches(tmp_path, tokenizer):
    """When more steps are queued than a rollout plays, the update takes up to twice a rollout's rows, oldest
    first, in as many minibatches as ever (the config's optimizer steps), each larger: rounds end in bursts,
    and an update with room for one rollout's rows alone would let the queue and its steps' age grow."""
    trainer = make_trainer(
        tmp_path, tokenizer, env=DoorEnv, group_size=2, rollout_steps=8, advantage_estimator="grpo",
        num_ppo_epochs=2,
    )  # fmt: skip
    trainer.slots = trainer._make_slots()
    trainer._rounds = EpisodeRounds(4, group_size=2)
    rollout = trainer._play(8)  # 32 rows: 4 minibatches of 8 per epoch
    trainer._rounds.over.clear()  # only the hand-made steps below are scored
    prompt, info = DoorEnv().reset()

    def queue(count):
        trainer._rounds.queue = [
            dict(
                prompt=prompt,
                actions=info["valid_actions"],
                chosen=0,
                logprob=-1.0,
                reward=0.0,
                primitive_steps=1,
                iteration=0,
                advantage=float(k),
            )  # fmt: skip
            for k in range(count)
        ]

    queue(50)  # all taken: 52 rows, 4 minibatches of 13 per epoch
    update = trainer._group_transitions(rollout)
    assert update["mask"].tolist() == [True] * 50 + [False] * 2
    assert update["advantages"][:50].tolist() == [float(k) for k in range(50)] and not trainer._rounds.queue
    minibatches = trainer._minibatches(update)
    assert len(minibatches) == trainer.args.micro_steps_per_rollout == 8
    assert [len(b["prompts"]) for b in minibatches] == [13] * 8
    first_epoch = torch.cat([b["advantages"][b["mask"]] for b in minibatches[:4]])
    assert sorted(first_epoch.tolist()) == [float(k) for k in range(50)]  # each row once an epoch

    queue(70)  # the oldest 64 taken, 6 wait
    update = trainer._group_transitions(rollout)
    assert update["mask"].all() and update["advantages"].tolist() == [float(k) for k in range(64)]
    assert [s["advantage"] for s in trainer._rounds.queue] == [64.0, 65.0, 66.0, 67.0, 68.0, 69.0]
    assert [len(b["prompts"]) for b in trainer._minibatches(update)] == [16] * 8

    queue(3)  # fewer than a rollout: the rollout's shape, masked rows
    update = trainer._group_transitions(rollout)
    assert len(update["prompts"]) == 32 and int(update["mask"].sum()) == 3
    assert [len(b["prompts"]) for b in trainer._minibatches(update)] == [8] * 8


def test_rows_a_group_estimator_drops_are_not_run_through_the_model(tmp_path, tokenizer):
    """A minibatch with masked rows (filling an update whose rounds have not all ended) forwards only the
    rows that count, and its loss and gradients are those of the kept rows alone."""
    trainer = make_trainer(
        tmp_path, tokenizer, env=DoorEnv, group_size=2, rollout_steps=24, advantage_estimator="gigpo"
    )
    trainer.slots = trainer._make_slots()
    minibatch = next(b for b in trainer._rollout() if b["mask"].any() and not b["mask"].all())
    kept = {
        key: [v for v, m in zip(value, minibatch["mask"], strict=True) if m]
        if isinstance(value, list)
        else value[minibatch["mask"]]
        for key, value in minibatch.items()
    }
    model = trainer.model
    forwarded = []

    def loss_and_gradients(batch):
        model.zero_grad()
        loss = trainer.compute_loss(
            lambda prompts, actions: forwarded.append(len(prompts)) or model(prompts, actions), batch
        )
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, gradients = loss_and_gradients(minibatch)
    expected_loss, expected_gradients = loss_and_gradients(kept)
    assert forwarded == [int(minibatch["mask"].sum())] * 2 < [len(minibatch["prompts"])] * 2
    assert torch.allclose(loss, expected_loss, atol=1e-6)
    assert gradients.keys() == expected_gradients.keys() and gradients
    for name, gradient in gradients.items():
        assert torch.allclose(gradient, expected_gradients[name], atol=1e-6), name


def test_a_critic_free_run_resumes_to_the_same_weights_and_rounds(tmp_path, tokenizer):
    """The checkpoint carries the rounds in flight and the queue: the resumed run goes on with the rounds its
    slots were playing (their seeds, steps and log-probs) and ends where the straight run ends."""
    # Episodes of up to 20 steps against rollouts of 8: rounds run across checkpoints.
    run = dict(
        env=DoorEnv,
        max_steps=6,
        rollout_steps=8,
        per_device_train_batch_size=32,
        advantage_estimator="gigpo",
        group_size=2,
    )
    straight = make_trainer(tmp_path / "straight", tokenizer, **run)
    straight.train()
    make_trainer(tmp_path / "resumed", tokenizer, save_strategy="steps", save_steps=1, **run).train()
    checkpoint = tmp_path / "resumed" / "run" / "checkpoint-3"
    saved = load_tree(
        checkpoint / ROLLOUT_STATE_FILE.format(rank=0), checkpoint / ROLLOUT_TENSORS_FILE.format(rank=0)
    )
    assert any(steps for r in saved["rounds"]["open"] for steps in r["steps"])  # rounds were in flight
    resumed = make_trainer(tmp_path / "resumed", tokenizer, seed=5, **run)  # another init, overwritten
    resumed.train(resume_from_checkpoint=str(checkpoint))
    expected, actual = trainable_state(straight), trainable_state(resumed)
    for name in expected:
        assert torch.allclose(expected[name], actual[name], atol=1e-6), name

    def rounds(trainer):
        state = trainer._rounds.state_dict()
        in_flight = [
            (r["group"], r["number"], r["seed"], r["ended"])
            + tuple(
                (s["prompt"], s["chosen"], s["iteration"], round(s["logprob"], 4))
                for e in r["steps"]
                for s in e
            )
            for r in state["open"]
        ]
        return in_flight, state["joined"], state["rounds_opened"], len(state["queue"])

    assert rounds(resumed) == rounds(straight)
    with pytest.raises(ValueError, match="written by a critic-free run"):
        make_trainer(tmp_path / "resumed", tokenizer, env=DoorEnv, max_steps=4).train(
            resume_from_checkpoint=str(checkpoint)
        )


def test_a_round_whose_episode_was_not_restored_is_dropped_on_resume(tmp_path, tokenizer):
    """An env that cannot save its episode restarts it on resume; the round that episode belonged to would
    mix two starts in one group, so that group drops its round (and starts a new one), the other keeps its."""
    run = dict(
        env=DoorEnv,
        max_steps=2,
        advantage_estimator="grpo",
        group_size=2,
        save_strategy="steps",
        save_steps=1,
    )
    make_trainer(tmp_path, tokenizer, **run).train()
    checkpoint = tmp_path / "run" / "checkpoint-2"
    files = checkpoint / ROLLOUT_STATE_FILE.format(rank=0), checkpoint / ROLLOUT_TENSORS_FILE.format(rank=0)
    state = load_tree(*files)
    rounds = state["rounds"]

    def in_flight(group, open_rounds):
        return [r for r in open_rounds if r["group"] == group]

    playing = [  # slots in the middle of an episode
        n
        for n in range(4)
        for r in in_flight(n // 2, rounds["open"])
        if r["number"] == rounds["joined"][n] and r["steps"][n % 2]
    ]
    assert playing
    state["slots"][playing[0]] = None  # what an env that cannot save its episode writes
    save_tree(state, *files)
    resumed = make_trainer(tmp_path, tokenizer, **run)
    with pytest.warns(UserWarning, match="starts a new episode on resume"):
        resumed._load_from_checkpoint(str(checkpoint))
    dropped = playing[0] // 2
    kept = 1 - dropped
    assert not in_flight(dropped, resumed._rounds.open)
    assert in_flight(kept, resumed._rounds.open) == in_flight(kept, rounds["open"]) != []
    resumed._play(1)  # the dropped group starts a new round: both its slots reset with one new seed
    first, second = resumed._rounds.members(dropped)
    seed = resumed._rounds.round_of(first)["seed"]
    assert resumed.slots[first].seed == resumed.slots[second].seed == seed
    assert seed not in [r["seed"] for r in rounds["open"]] and seed >= rounds["rounds_opened"]


def test_beta_adds_a_kl_penalty_to_the_base_policy(tmp_path, tokenizer):
    trainer = make_trainer(
        tmp_path, tokenizer, max_steps=4, advantage_estimator="grpo", group_size=2, beta=0.1
    )
    trainer.train()
    kl = [row["policy/kl_to_base"] for row in trainer.state.log_history if "policy/kl_to_base" in row]
    assert len(kl) == 4 and kl[0] == pytest.approx(0.0, abs=1e-6) and kl[-1] > 0  # LoRA's B starts at zero


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"advantage_estimator": "vtrace"}, "advantage_estimator='vtrace'; use one of"),
        ({"advantage_estimator": "grpo", "group_size": 1}, "group_size=1; a group compares at least 2"),
        ({"advantage_estimator": "grpo", "group_size": 3}, "num_envs=4 is not a multiple of group_size=3"),
        ({"beta": -1.0}, "beta=-1.0"),
    ],
)
def test_bad_estimator_settings_are_named(tmp_path, tokenizer, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_trainer(tmp_path, tokenizer, **overrides)


def test_a_model_with_a_value_head_is_refused_for_a_critic_free_estimator(tmp_path, tokenizer):
    from trl_embodied import EmbodiedPPOTrainer

    from .test_trainer import config

    model = EmbodiedActorCritic(build_llama(len(tokenizer)), tokenizer, value_head_sizes=[16])
    with pytest.raises(ValueError, match="uses no value head; build the model with value_head_sizes=None"):
        EmbodiedPPOTrainer(model=model, args=config(tmp_path, advantage_estimator="grpo", group_size=2))


def test_updates_before_any_round_ended_leave_the_adapter_alone(tmp_path, tokenizer):
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        env=DoorEnv,
        advantage_estimator="grpo",
        group_size=2,
        rollout_steps=2,
        max_steps=2,
        weight_decay=0.5,  # AdamW would shrink the weights on any optimizer step, gradient or not
    )  # a random policy rarely opens and walks through the door within 2 steps in both slots of a group
    before = trainable_state(trainer)
    trainer.train()
    empty = [
        row["policy/empty_minibatch"] for row in trainer.state.log_history if "policy/empty_minibatch" in row
    ]
    assert empty == [1.0, 1.0]  # every minibatch was skipped...
    after = trainable_state(trainer)
    for name, weights in before.items():  # ...so no optimizer step moved a weight
        assert torch.equal(weights, after[name]), name
    assert any(steps for r in trainer._rounds.open for steps in r["steps"])  # a later update learns from them


def test_with_history_gigpo_anchors_on_the_prompt_that_carries_it(tmp_path, tokenizer, monkeypatch):
    """The anchor state is the exact prompt: with history_length the same door after different pasts is a
    different anchor, so GiGPO's step groups never pool them."""
    from trl_embodied.trainer import episode_rounds

    anchored = []
    real = episode_rounds.group_advantages
    monkeypatch.setattr(
        episode_rounds,
        "group_advantages",
        lambda episodes, *a, **k: (
            anchored.extend(s for e in episodes for s in e.states) or real(episodes, *a, **k)
        ),
    )
    _, played, _, _ = play_rollouts(tmp_path, tokenizer, 6, advantage_estimator="gigpo", history_length=2)
    prompts = {p for rollout in played for row in rollout.prompts for p in row}
    assert anchored and all(prompt in prompts for prompt, _ in anchored)
    assert any(prompt.startswith("Your last actions: ") for prompt, _ in anchored)
