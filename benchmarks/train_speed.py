"""Training throughput: EmbodiedPPOTrainer against a plain TWOSOME loop, default model, CPU.

Both train the same LoRA actor-critic on the same task with the same PPO arithmetic; in the same run:

- ``trainer``: EmbodiedPPOTrainer (prefix-shared scoring, all envs of a step in one forward, whole
  minibatches per forward + backward, the LM head only at action tokens), float32;
- ``trainer_bf16``: the same with ``bf16=True`` (autocast in rollout and update alike);
- ``trainer_no_state_reuse``: float32 with every row run through the model, as before states were reused
  (each distinct (prompt, actions) pair scored once per batch, and once per rollout): the lever on its own;
- ``plain``: the reference loop of the DESIGN's measurement: each action scored as its own
  prompt + action sequence (one forward per environment and step, its actions padded into a batch), a
  separate forward for the value, and one transition per forward + backward in the update.

Decision steps per second are end to end (rollout + update), with the time split into scoring,
environment, update and overhead, and each measurement's peak extra memory (its own process). The trainer
runs six PPO iterations and reports iterations 2-5 together (the first carries one-off costs; the sixth's
update is not timed): with state reuse its speed depends on how many distinct states a rollout visits,
which changes as the policy does, so the distinct states of each measured rollout are reported too. The
plain loop runs one iteration after a warm-up forward (it reuses nothing, so one is representative).
Shapes: Tomato Salad (4 envs x 32 steps, 5 actions, ~45-token prompts) and Entertainment (4 envs x 8
steps, all 17 actions of its vocabulary offered in every state (``valid_actions="all"``), ~55-95-token
prompts; fewer steps to bound the plain loop's time).

Target: >= 5 decision steps/s at the Tomato Salad shape, >= 6x the plain loop.

    python benchmarks/train_speed.py

Writes benchmarks/results/train_speed.json.
"""

from __future__ import annotations

import multiprocessing
import platform
import tempfile
import time
from pathlib import Path

from common import QUIET_RUN, isolated, paper_gamma, peak_rss_mb, write_json

RESULTS = Path(__file__).parent / "results" / "train_speed.json"
SHAPES = {
    "tomato_salad": {"env_id": "trl_embodied/Overcooked-TomatoSalad-v0", "num_envs": 4, "rollout_steps": 32},
    # The whole-vocabulary variant: every state offers all 17 actions, the scorer's widest household shape.
    "entertainment": {
        "env_id": "trl_embodied/Household-Entertainment-v0",
        "env_kwargs": {"valid_actions": "all"},
        "num_envs": 4,
        "rollout_steps": 8,
    },
}
MINIBATCH = 32  # transitions per optimizer step, both methods
ITERATIONS = 6  # trainer iterations; the first and the last are not measured


def measure_trainer(shape: str, bf16: bool, reuse_states: bool = True) -> dict:
    """``ITERATIONS`` PPO iterations; report iterations 2 to ``ITERATIONS - 1`` together."""
    from transformers import TrainerCallback

    from trl_embodied import EmbodiedPPOConfig, EmbodiedPPOTrainer

    spec = SHAPES[shape]
    transitions = spec["num_envs"] * spec["rollout_steps"]
    args = EmbodiedPPOConfig(
        output_dir=tempfile.mkdtemp(),
        env_id=spec["env_id"],
        env_kwargs=spec.get("env_kwargs", {}),
        gamma=paper_gamma(spec["env_id"]),
        num_envs=spec["num_envs"],
        rollout_steps=spec["rollout_steps"],
        per_device_train_batch_size=min(MINIBATCH, transitions),
        target_kl=None,  # every minibatch runs: the full work of an iteration
        num_ppo_epochs=1,  # one pass over the rollout, as the plain loop makes
        max_steps=ITERATIONS * transitions // min(MINIBATCH, transitions),
        bf16=bf16,
        reuse_states=reuse_states,
        use_cpu=True,
        seed=0,
        **QUIET_RUN,
    )

    class Record(TrainerCallback):
        logs: list[dict] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logs.append(dict(logs or {}))

    memory_before = peak_rss_mb()
    trainer = EmbodiedPPOTrainer(model=None, args=args, callbacks=[Record()])
    trainer.train()
    # The first optimizer step of iteration i logs iteration i's rollout times together with iteration
    # i - 1's wall time and update time.
    rollouts = [log for log in Record.logs if "time/scoring_seconds" in log]
    measured = range(1, ITERATIONS - 1)
    seconds = sum(transitions / rollouts[i + 1]["env_steps_per_second"] for i in measured)
    scoring = sum(rollouts[i]["time/scoring_seconds"] for i in measured)
    env = sum(rollouts[i]["time/env_seconds"] for i in measured)
    update = sum(rollouts[i + 1]["time/update_seconds"] for i in measured)
    return {
        "decision_steps_per_second": transitions * len(measured) / seconds,
        "iterations": len(measured),
        "iteration_seconds": seconds / len(measured),
        "scoring_seconds": scoring / len(measured),
        "env_seconds": env / len(measured),
        "update_seconds": update / len(measured),
        "overhead_seconds": (seconds - scoring - env - update) / len(measured),
        "peak_extra_memory_mb": peak_rss_mb() - memory_before,
        # States each measured rollout ran through the model, of its num_envs x rollout_steps decisions
        # (+ bootstraps): the distinct ones with reuse, every one without.
        "rollout_states_scored": [rollouts[i]["rollout/states_scored"] for i in measured],
    }


def measure_plain(shape: str) -> dict:
    """One PPO iteration of the plain loop (after a warm-up forward)."""
    import torch

    from trl_embodied import EmbodiedActorCritic, load_base_model, make_env
    from trl_embodied.scoring import naive_action_logprobs
    from trl_embodied.trainer.ppo import (
        clipped_policy_loss,
        clipped_value_loss,
        compute_gae,
        normalize_advantages,
    )

    spec = SHAPES[shape]
    gamma = paper_gamma(spec["env_id"])  # timing does not depend on it; the same as the trainer's run
    torch.manual_seed(0)
    base, tokenizer = load_base_model()
    model = EmbodiedActorCritic(base, tokenizer)
    policy, head = model.policy, model.value_head
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in policy.parameters() if p.requires_grad], "lr": 1e-3},
            {"params": head.parameters(), "lr": 1e-3},
        ]
    )

    def act(prompt: str, actions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi(. | s) over the actions (word-normalized), and V(s): one sequence per action, then the prompt."""
        logprobs = naive_action_logprobs(policy, tokenizer, [prompt], [actions])[0]
        scores = logprobs / torch.tensor([len(a.split()) for a in actions], dtype=torch.float32)
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        hidden = policy(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, -1]
        return torch.log_softmax(scores, -1), head(hidden[None].float())[0]

    envs = [make_env(spec["env_id"], **spec.get("env_kwargs", {})) for _ in range(spec["num_envs"])]
    states = [env.reset(seed=i) for i, env in enumerate(envs)]
    with torch.no_grad():
        act(states[0][0], states[0][1]["valid_actions"])  # warm-up
    memory_before = peak_rss_mb()
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    scoring = env_time = 0.0
    steps, n = spec["rollout_steps"], spec["num_envs"]
    records, rewards, values, primitive = (
        [],
        torch.zeros(steps, n),
        torch.zeros(steps, n),
        torch.ones(steps, n),
    )
    terminated = torch.zeros(steps, n, dtype=torch.bool)
    truncated = torch.zeros(steps, n, dtype=torch.bool)
    for t in range(steps):
        for i, env in enumerate(envs):
            prompt, info = states[i]
            tick = time.perf_counter()
            with torch.no_grad():
                log_policy, value = act(prompt, info["valid_actions"])
            scoring += time.perf_counter() - tick
            choice = int(torch.multinomial(log_policy.exp(), 1, generator=generator))
            tick = time.perf_counter()
            next_prompt, reward, term, trunc, next_info = env.step(choice)
            primitive[t, i] = next_info["primitive_steps"]
            states[i] = env.reset() if term or trunc else (next_prompt, next_info)
            env_time += time.perf_counter() - tick
            records.append((t, i, prompt, list(info["valid_actions"]), choice, float(log_policy[choice])))
            rewards[t, i], values[t, i], terminated[t, i], truncated[t, i] = reward, float(value), term, trunc
    with torch.no_grad():
        tick = time.perf_counter()
        bootstrap = torch.stack([act(p, i["valid_actions"])[1] for p, i in states])
        scoring += time.perf_counter() - tick
    next_values = torch.cat([values[1:], bootstrap[None]])
    advantages, returns = compute_gae(
        rewards, values, next_values, terminated, truncated, primitive, gamma=gamma, gae_lambda=0.95
    )
    advantages = normalize_advantages(advantages)
    rollout_done = time.perf_counter()
    order = torch.randperm(len(records), generator=generator).tolist()
    minibatch = min(MINIBATCH, len(records))
    for begin in range(0, len(order), minibatch):
        optimizer.zero_grad()
        for index in order[begin : begin + minibatch]:  # one transition per forward + backward
            t, i, prompt, actions, choice, old = records[index]
            log_policy, value = act(prompt, actions)
            policy_loss = clipped_policy_loss(
                log_policy[choice][None], torch.tensor([old]), advantages[t, i][None], 0.2
            )
            value_loss = clipped_value_loss(value[None], values[t, i][None], returns[t, i][None], 0.2)
            entropy = -(log_policy.exp() * log_policy).sum()
            ((policy_loss.loss + 0.5 * value_loss - 0.01 * entropy) / minibatch).backward()
        optimizer.step()
    end = time.perf_counter()
    seconds = end - start
    return {
        "decision_steps_per_second": len(records) / seconds,
        "iteration_seconds": seconds,
        "scoring_seconds": scoring,
        "env_seconds": env_time,
        "update_seconds": end - rollout_done,
        "overhead_seconds": seconds - scoring - env_time - (end - rollout_done),
        "peak_extra_memory_mb": peak_rss_mb() - memory_before,
    }


def main() -> None:
    results = {"shapes": {}, "minibatch_transitions": MINIBATCH}
    for shape, spec in SHAPES.items():
        row = {"shape": spec}
        row["trainer"] = isolated(measure_trainer, shape, False)
        row["trainer_bf16"] = isolated(measure_trainer, shape, True)
        row["trainer_no_state_reuse"] = isolated(measure_trainer, shape, False, False)
        row["plain"] = isolated(measure_plain, shape)
        plain = row["plain"]["decision_steps_per_second"]
        for method in ("trainer", "trainer_bf16", "trainer_no_state_reuse", "plain"):
            figures = row[method]
            figures["ratio_to_plain"] = figures["decision_steps_per_second"] / plain
            print(
                f"{shape} {method}: {figures['decision_steps_per_second']:.2f} decision steps/s "
                f"({figures['ratio_to_plain']:.1f}x plain); iteration {figures['iteration_seconds']:.1f} s = scoring "
                f"{figures['scoring_seconds']:.1f} + env {figures['env_seconds']:.2f} + update "
                f"{figures['update_seconds']:.1f} + overhead {figures['overhead_seconds']:.1f}; peak extra memory "
                f"{figures['peak_extra_memory_mb']:.0f} MB"
                + (f"; rollout states scored {figures['rollout_states_scored']}" if method != "plain" else "")
            )
        results["shapes"][shape] = row
    results["machine"] = f"{platform.machine()}, {multiprocessing.cpu_count()} cores, CPU only"
    write_json(RESULTS, results)


if __name__ == "__main__":
    main()
