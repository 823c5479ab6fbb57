"""vllm_mode="server": the client of a vLLM server, over HTTP, against a server that speaks the part of vLLM's API
the client uses (health, models, completions with prompt_logprobs, collective_rpc reload_weights from a folder,
reset_prefix_cache) and scores with a real tiny model. `make test-vllm` runs the client against `vllm serve`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from peft import get_peft_model
from safetensors.torch import load_file

from trl_embodied import ActionScorer, VLLMActionScorer, VLLMClient, collect_trajectories, evaluate_policy
from trl_embodied.modeling import default_lora_config

from .conftest import build_llama
from .test_trainer import make_trainer, train_in_two_processes
from .toy_envs import TwoChoiceEnv


class ProtocolServer:
    """An HTTP server with vLLM's endpoints and answers, scoring with ``model``; ``dev_mode=False`` is a server
    started without VLLM_SERVER_DEV_MODE (no /collective_rpc, no /reset_prefix_cache). ``requests`` records
    every (path, body)."""

    def __init__(self, model: torch.nn.Module, dev_mode: bool = True):
        self.model, self.dev_mode, self.requests = model, dev_mode, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def answer(self, code: int, body: dict | None = None):
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/health":
                    self.answer(200)
                elif self.path == "/v1/models":
                    self.answer(200, {"object": "list", "data": [{"id": "tiny-llama", "object": "model"}]})
                else:
                    self.answer(404, {"detail": "Not Found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"null")
                server.requests.append((self.path, body))
                if self.path == "/v1/completions":
                    self.answer(200, {"choices": server.complete(body)})
                elif self.path in ("/collective_rpc", "/reset_prefix_cache") and not server.dev_mode:
                    self.answer(404, {"detail": "Not Found"})
                elif self.path == "/collective_rpc":
                    assert body["method"] == "reload_weights"
                    weights = load_file(str(Path(body["kwargs"]["weights_path"]) / "model.safetensors"))
                    server.model.load_state_dict(weights, strict=True)
                    self.answer(200, {"results": [None]})
                elif self.path == "/reset_prefix_cache":
                    self.answer(200, {"success": True})
                else:
                    self.answer(404, {"detail": "Not Found"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def complete(self, body: dict) -> list[dict]:
        """vLLM's completion choices: per prompt, ``prompt_logprobs`` maps each token (its id as a string) to
        its log-probability given the tokens before; the first position has none. Listed last to first: the
        client must order them by ``index``."""
        assert body["prompt_logprobs"] == 0 and body["max_tokens"] == 1
        choices = []
        with torch.no_grad():
            for index, ids in enumerate(body["prompt"]):
                logprobs = self.model(torch.tensor([ids])).logits[0].log_softmax(-1)
                positions = [None] + [
                    {str(ids[p]): {"logprob": logprobs[p - 1, ids[p]].item(), "rank": 1}}
                    for p in range(1, len(ids))
                ]
                choices.append({"index": index, "text": "", "prompt_logprobs": positions})
        return choices[::-1]

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


@pytest.fixture
def server(tokenizer):
    server = ProtocolServer(build_llama(len(tokenizer), seed=0))
    yield server
    server.httpd.shutdown()


def test_scores_through_a_server_equal_the_prefix_shared_scorer(server, tokenizer, task_batch):
    client = VLLMClient(server.url, weights_dir="unused", timeout=10)
    assert client.model == "tiny-llama"
    base = build_llama(len(tokenizer), seed=0)
    for normalization in ("none", "word"):
        actual = VLLMActionScorer(client, tokenizer, normalization).score(*task_batch)
        with torch.no_grad():
            expected = ActionScorer(base, tokenizer, normalization).score(*task_batch)
        torch.testing.assert_close(actual.logprobs, expected.logprobs, atol=1e-5, rtol=0)
        torch.testing.assert_close(actual.probs, expected.probs, atol=1e-5, rtol=0)
    # one request per scoring call, one sequence per (state, action)
    completions = [body for path, body in server.requests if path == "/v1/completions"]
    assert len(completions) == 2 and len(completions[0]["prompt"]) == sum(len(a) for a in task_batch[1])


def test_after_a_sync_the_server_scores_the_updated_policy(server, tokenizer, task_batch, tmp_path):
    config = default_lora_config()
    config.init_lora_weights = False  # random B: the adapter changes the policy
    torch.manual_seed(0)
    policy = get_peft_model(build_llama(len(tokenizer), seed=0), config)
    scorer = VLLMActionScorer(VLLMClient(server.url, weights_dir=tmp_path / "weights"), tokenizer)
    with torch.no_grad():
        with policy.disable_adapter():
            plain = ActionScorer(policy, tokenizer).score(*task_batch)
        adapted = ActionScorer(policy, tokenizer).score(*task_batch)
    assert (adapted.logprobs - plain.logprobs).abs().max() > 1e-3  # the check below can tell them apart
    torch.testing.assert_close(scorer.score(*task_batch).logprobs, plain.logprobs, atol=1e-5, rtol=0)
    scorer.sync_weights(policy)
    torch.testing.assert_close(scorer.score(*task_batch).logprobs, adapted.logprobs, atol=1e-5, rtol=0)
    # the weights went through the folder (no half-written file left) and the stale prefixes were dropped
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == ["model.safetensors"]
    assert server.paths()[-3:-1] == ["/collective_rpc", "/reset_prefix_cache"]
    # the adapter was unmerged after the copy: the policy itself is unchanged
    with torch.no_grad():
        torch.testing.assert_close(
            ActionScorer(policy, tokenizer).score(*task_batch).logprobs, adapted.logprobs
        )


def test_a_server_without_its_development_endpoints_is_named_with_the_fix(tokenizer, tmp_path):
    server = ProtocolServer(build_llama(len(tokenizer)), dev_mode=False)
    scorer = VLLMActionScorer(VLLMClient(server.url, weights_dir=tmp_path), tokenizer)
    with pytest.raises(RuntimeError, match="no /collective_rpc endpoint.*VLLM_SERVER_DEV_MODE=1 vllm serve"):
        scorer.sync_weights(build_llama(len(tokenizer)))
    server.httpd.shutdown()


def test_no_server_at_the_address_is_a_clear_error(tmp_path):
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as probe:
        port = probe.server_port  # free once closed
    with pytest.raises(ConnectionError, match=f"no vLLM server answered at http://127.0.0.1:{port}/health"):
        VLLMClient(f"http://127.0.0.1:{port}", weights_dir=tmp_path, timeout=1.5)


def test_trainer_in_server_mode_scores_rollouts_through_the_server(server, tokenizer, tmp_path):
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        env=TwoChoiceEnv,
        use_vllm=True,
        vllm_mode="server",
        vllm_server_base_url=server.url,
        vllm_sync_dir=str(tmp_path / "weights"),
        max_steps=6,
    )
    trainer.train()
    # three iterations of two optimizer steps: each rollout (one scoring request: TwoChoiceEnv's states are
    # few) first handed over the weights the last update made
    assert server.paths() == ["/collective_rpc", "/reset_prefix_cache", "/v1/completions"] * 3
    policy = trainer.model.policy
    prompt, info = TwoChoiceEnv().reset(seed=0)
    served = trainer._vllm_scorer().score([prompt], [info["valid_actions"]])
    with torch.no_grad():
        trained = ActionScorer(policy, tokenizer).score([prompt], [info["valid_actions"]])
    torch.testing.assert_close(served.logprobs, trained.logprobs, atol=1e-5, rtol=0)


def test_two_processes_share_one_server_and_only_the_main_one_syncs(server, tmp_path):
    """Both processes score their rollouts through the server; the weights (the same on both after an update)
    are handed over once per iteration, by the main process, and no scoring comes before the first hand-over
    (the other process waits for it)."""
    train_in_two_processes(tmp_path, server.url)  # the ranks' adapters stay the same
    paths = server.paths()
    assert paths.count("/collective_rpc") == paths.count("/reset_prefix_cache") == 2  # two iterations
    # the rollouts were scored after each sync (at least one request per process), none before the first
    first_sync, second_sync = (i for i, path in enumerate(paths) if path == "/collective_rpc")
    assert paths[:first_sync] == []
    assert paths[first_sync + 2 : second_sync].count("/v1/completions") >= 2
    assert paths[second_sync + 2 :].count("/v1/completions") >= 2


def test_evaluation_and_trajectories_play_a_policy_scored_by_a_server(server, tokenizer):
    """evaluate_policy and collect_trajectories take the vLLM scorer where they take ActionScorer: the same
    episodes, action for action, with the same probabilities."""
    client = VLLMClient(server.url, weights_dir="unused")
    base = build_llama(len(tokenizer), seed=0)
    served = evaluate_policy(VLLMActionScorer(client, tokenizer), TwoChoiceEnv, 4, progress=False)
    with torch.no_grad():
        local = evaluate_policy(ActionScorer(base, tokenizer), TwoChoiceEnv, 4, progress=False)
    assert served.episodes == local.episodes
    rows, expected = (
        collect_trajectories(
            scorer, TwoChoiceEnv, 2, generator=torch.Generator().manual_seed(0), progress=False
        )
        for scorer in (VLLMActionScorer(client, tokenizer), ActionScorer(base, tokenizer))
    )
    assert list(rows["action"]) == list(expected["action"]) and len(set(rows["action"])) == 2  # both chosen
    for mine, theirs in zip(rows["action_probs"], expected["action_probs"], strict=True):
        assert mine == pytest.approx(theirs, abs=1e-5)
