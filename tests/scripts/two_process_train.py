"""Run by test_two_processes_hold_the_same_adapter under `accelerate launch --num_processes 2`: each rank's
adapter, its metrics before they are averaged over processes, and rank 0's logs. A second argument, a vLLM
server's address, scores the rollouts there (vllm_mode="server")."""

import json
import sys
from pathlib import Path

import torch
from transformers import set_seed

from tests.conftest import build_llama, build_tokenizer
from tests.toy_envs import FlakyEnv
from trl_embodied import EmbodiedActorCritic, EmbodiedPPOConfig, EmbodiedPPOTrainer

out = Path(sys.argv[1])
server = {}
if len(sys.argv) > 2:
    server = dict(
        use_vllm=True,
        vllm_mode="server",
        vllm_server_base_url=sys.argv[2],
        vllm_sync_dir=str(out / "weights"),
    )
set_seed(0)
tokenizer = build_tokenizer()
args = EmbodiedPPOConfig(
    output_dir=str(out / "run"),
    num_envs=4,
    rollout_steps=4,
    per_device_train_batch_size=8,
    max_steps=4,
    num_ppo_epochs=1,  # two iterations of two optimizer steps
    learning_rate=2e-2,
    save_strategy="no",
    report_to="none",
    disable_tqdm=True,
    value_head_sizes=[16],
    use_cpu=True,
    on_env_error="reset",  # every env's third step raises: each process survives 4 errors a rollout
    **server,
)
model = EmbodiedActorCritic(build_llama(len(tokenizer)), tokenizer, value_head_sizes=[16])
trainer = EmbodiedPPOTrainer(model=model, args=args, env=lambda: FlakyEnv(every=3))
local_metrics = []  # this process's own means at each log, before the average over processes
average_over_processes = trainer._metrics_over_processes


def record_then_average():
    if trainer._metrics:  # the end-of-training summary logs none
        local_metrics.append({key: sum(values) / len(values) for key, values in trainer._metrics.items()})
    return average_over_processes()


trainer._metrics_over_processes = record_then_average
trainer.train()
rank = trainer.accelerator.process_index
(out / f"metrics_rank{rank}.json").write_text(json.dumps(local_metrics))
unwrapped = trainer.accelerator.unwrap_model(trainer.model)
torch.save(
    {
        **{n: p.detach().clone() for n, p in unwrapped.named_parameters() if p.requires_grad},
        **{n: b.clone() for n, b in unwrapped.value_head.named_buffers(prefix="value_head")},
    },
    out / f"rank{rank}.pt",
)
seeds = [slot.env.unwrapped.np_random_seed for slot in trainer.slots]
gathered = trainer.accelerator.gather_for_metrics([seeds])
if trainer.accelerator.is_main_process:
    summary = {
        "env_steps": trainer._env_steps,
        "seeds_differ": gathered[0] != gathered[1],
        "logs": [row for row in trainer.state.log_history if "loss/policy" in row],
    }
    (out / "summary.json").write_text(json.dumps(summary))
trainer.accelerator.end_training()  # destroys the process group: gloo can abort at exit otherwise
