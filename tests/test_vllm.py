"""The vLLM scorer against the prefix-shared Hugging Face scorer on the default model (float32).

Runs where vLLM is installed: ``make test-vllm`` builds its own venv (vLLM's CPU build pins torch and
transformers apart from the main one) and runs this file; elsewhere it is skipped.
"""

import os

import pytest
import torch

pytest.importorskip(
    "vllm", reason="vLLM is not installed here; `make test-vllm` runs these tests in its own venv"
)
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process: no spawn

from peft import get_peft_model  # noqa: E402

from trl_embodied import ActionScorer, load_base_model, make_env  # noqa: E402
from trl_embodied.modeling import default_lora_config, default_model_dir  # noqa: E402
from trl_embodied.vllm_scoring import VLLMActionScorer  # noqa: E402

KV_CACHE_BYTES = 512 * 2**20
# Two engines' float32 kernels through 30 layers: on an AVX2 CPU they round apart by up to 1.0e-4, 1.6e-5 of
# a joint log-prob's size (~6), so the bound is relative as well; a scoring error would be far larger.
LOGPROBS_CLOSE = dict(atol=1e-4, rtol=3e-5)


@pytest.fixture(scope="module")
def llm():
    from vllm import LLM

    return LLM(
        model=str(default_model_dir()),
        dtype="float32",
        enable_prefix_caching=True,
        max_model_len=2048,
        # A size, not a share: on the CPU build a share is of the machine's memory less what this process
        # already holds, so 0.1 failed on a 16 GiB machine; 2048 tokens of this model's cache are ~90 MiB.
        kv_cache_memory_bytes=KV_CACHE_BYTES,
        seed=0,
    )


@pytest.fixture(scope="module")
def states():
    prompts, actions = [], []
    for env_id in ("trl_embodied/Overcooked-TomatoSalad-v0", "trl_embodied/Household-Entertainment-v0"):
        prompt, info = make_env(env_id).reset(seed=0)
        prompts.append(prompt)
        actions.append(info["valid_actions"])
    return prompts + prompts[:1], actions + actions[:1]  # a repeated state too


@pytest.mark.parametrize("normalization", ["none", "token", "word"])
def test_vllm_scores_equal_the_prefix_shared_scorer(llm, states, normalization):
    base, tokenizer = load_base_model()
    with torch.no_grad():
        expected = ActionScorer(base, tokenizer, normalization=normalization).score(*states)
    actual = VLLMActionScorer(llm, tokenizer, normalization=normalization).score(*states)
    assert torch.equal(actual.mask, expected.mask) and torch.equal(actual.num_tokens, expected.num_tokens)
    torch.testing.assert_close(actual.logprobs, expected.logprobs, **LOGPROBS_CLOSE)
    torch.testing.assert_close(actual.probs, expected.probs, atol=1e-4, rtol=0)
    assert actual.hidden.shape == (len(states[0]), 0)


def test_vllm_scores_the_policy_whose_weights_it_was_last_given(llm, states):
    """After each update the trainer hands the policy over: vLLM then scores the updated policy (adapter
    merged), not the one before, even for prompts already in its prefix cache."""
    base, tokenizer = load_base_model()
    config = default_lora_config()
    config.init_lora_weights = False  # random B: the adapter changes the policy
    torch.manual_seed(0)
    policy = get_peft_model(base, config)
    scorer = VLLMActionScorer(llm, tokenizer, normalization="word")
    with torch.no_grad():
        with policy.disable_adapter():
            plain = ActionScorer(policy, tokenizer).score(*states)
        first = ActionScorer(policy, tokenizer).score(*states)
        for name, parameter in policy.named_parameters():  # an "update" of the adapter
            if "lora_B" in name:
                parameter.mul_(-1.0)
        second = ActionScorer(policy, tokenizer).score(*states)
    # the checks below can tell the three policies apart
    assert (first.logprobs - plain.logprobs).abs().max() > 1e-2
    assert (second.logprobs - first.logprobs).abs().max() > 1e-2
    torch.testing.assert_close(scorer.score(*states).logprobs, plain.logprobs, **LOGPROBS_CLOSE)
    for name, parameter in policy.named_parameters():  # back to the first adapter
        if "lora_B" in name:
            parameter.data.mul_(-1.0)
    assert scorer.sync_weights(policy) == len(list(base.parameters())) - 4 * 30  # all but LoRA's A and B
    torch.testing.assert_close(scorer.score(*states).logprobs, first.logprobs, **LOGPROBS_CLOSE)
    for name, parameter in policy.named_parameters():
        if "lora_B" in name:
            parameter.data.mul_(-1.0)
    scorer.sync_weights(policy)
    torch.testing.assert_close(scorer.score(*states).logprobs, second.logprobs, **LOGPROBS_CLOSE)


def test_training_with_vllm_rollouts_scores_with_the_updated_policy(tmp_path, states):
    """use_vllm=True: the rollout's actions are scored by the colocated engine, the update runs in the
    Trainer, and after training the engine's policy is the trained one (synced at the next scoring)."""
    from trl_embodied import EmbodiedPPOConfig, EmbodiedPPOTrainer

    args = EmbodiedPPOConfig(
        output_dir=str(tmp_path),
        env_id="trl_embodied/Overcooked-TomatoSalad-v0",
        use_vllm=True,
        vllm_kv_cache_memory_bytes=KV_CACHE_BYTES,  # as the module's engine: any machine's memory will do
        vllm_max_model_length=2048,
        num_envs=2,
        rollout_steps=4,
        total_env_steps=16,
        per_device_train_batch_size=4,
        learning_rate=2e-2,  # large steps: the trained policy must differ from the base one measurably
        report_to="none",
        save_strategy="no",
        use_cpu=True,
    )
    trainer = EmbodiedPPOTrainer(args=args)
    trainer.train()
    model = trainer.accelerator.unwrap_model(trainer.model)
    with torch.no_grad():
        trained = model.scorer.score(*states).log_policy
        with model.policy.disable_adapter():
            untrained = model.scorer.score(*states).log_policy
    assert (trained - untrained)[trained.isfinite()].abs().max() > 1e-3
    probs = trainer.current_policy()(*states)  # through the engine, synced to the last optimizer step
    torch.testing.assert_close(probs, trained.exp(), atol=1e-4, rtol=0)
    assert trainer._vllm_synced_step == trainer.state.global_step > 0


@pytest.fixture(scope="module")
def server():
    """``vllm serve`` of the default model with the development endpoints the weight sync needs."""
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(default_model_dir()),
    ]
    command += ["--dtype", "float32", "--enable-prefix-caching", "--max-model-len", "2048", "--enforce-eager"]
    command += ["--gpu-memory-utilization", "0.1", "--port", str(port), "--served-model-name", "smollm"]
    process = subprocess.Popen(
        command,
        env={**os.environ, "VLLM_SERVER_DEV_MODE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=60)


def test_a_vllm_server_scores_as_the_prefix_shared_scorer_and_takes_the_updated_policy(
    server, states, tmp_path
):
    """vllm_mode="server": scoring over HTTP (the completions endpoint's prompt_logprobs), and after a sync
    through a folder the server scores the updated policy."""
    from trl_embodied import VLLMClient

    base, tokenizer = load_base_model()
    config = default_lora_config()
    config.init_lora_weights = False
    torch.manual_seed(0)
    policy = get_peft_model(base, config)
    scorer = VLLMActionScorer(VLLMClient(server, tmp_path / "weights", timeout=600), tokenizer, "none")
    with torch.no_grad():
        with policy.disable_adapter():
            plain = ActionScorer(policy, tokenizer, "none").score(*states)
        adapted = ActionScorer(policy, tokenizer, "none").score(*states)
    assert (adapted.logprobs - plain.logprobs).abs().max() > 1e-2
    torch.testing.assert_close(scorer.score(*states).logprobs, plain.logprobs, **LOGPROBS_CLOSE)
    scorer.sync_weights(policy)
    torch.testing.assert_close(scorer.score(*states).logprobs, adapted.logprobs, **LOGPROBS_CLOSE)
