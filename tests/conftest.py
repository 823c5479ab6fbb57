"""Tiny random models and a tokenizer, built in process: the tests never touch the Hub."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

import trl_embodied

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>"]


def _corpus() -> list[str]:
    """Prompts and actions of every built-in task: the text the tiny tokenizer must cover."""
    lines = []
    for env_id in trl_embodied.ENV_IDS:
        env = trl_embodied.make_env(env_id)
        prompt, info = env.reset(seed=0)
        lines += [prompt, *info["valid_actions"]]
        for action in env.unwrapped.plan():
            prompt, *_, info = env.step(action)
            lines += [prompt, *info["valid_actions"]]
    return lines


def build_tokenizer(*, add_bos: bool = False) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2 / SmolLM style) trained on the tasks' text in milliseconds."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    if add_bos:  # Llama-style: every sequence starts with <s>
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def build_llama(
    vocab_size: int, seed: int = 0, hidden_size: int = 32, init_std: float = 0.02, max_positions: int = 512
) -> LlamaForCausalLM:
    """A 2-layer Llama. ``init_std`` bounds its logits: at 0.02 and hidden size 32 two tokens' logits differ
    by about 1 nat at most, too little for a policy to become confident through a LoRA adapter."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        initializer_range=init_std,
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def build_gpt2(vocab_size: int, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=512, pad_token_id=0
    )
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer()


@pytest.fixture(scope="session")
def bos_tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer(add_bos=True)


@pytest.fixture
def llama(tokenizer) -> LlamaForCausalLM:
    return build_llama(len(tokenizer))


@pytest.fixture
def gpt2(tokenizer) -> GPT2LMHeadModel:
    return build_gpt2(len(tokenizer))


@pytest.fixture
def saved_llama(tmp_path, llama, tokenizer):
    """The tiny Llama and its tokenizer saved to a folder: a model path, as a user passes one."""
    llama.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny"


@pytest.fixture(scope="session")
def task_batch() -> tuple[list[str], list[list[str]]]:
    """Prompts of different lengths with 5, 17 and 8 valid actions (Entertainment's whole vocabulary)."""
    prompts, actions = [], []
    for env_id, env_kwargs in (
        ("Overcooked-TomatoSalad-v0", {}),
        ("Household-Entertainment-v0", {"valid_actions": "all"}),
        ("Overcooked-TomatoLettuceSalad-v0", {}),
    ):
        prompt, info = trl_embodied.make_env(env_id, **env_kwargs).reset(seed=0)
        prompts.append(prompt)
        actions.append(info["valid_actions"])
    return prompts, actions
