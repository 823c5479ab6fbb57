"""The text-environment contract shared by every trl_embodied environment, and its wrappers.

A text environment is a ``gymnasium.Env`` whose

- observation is the prompt text (a ``gymnasium.spaces.Text``), ending where an action completes it;
- action is an ``int`` index into ``info["valid_actions"]``, the list of action texts valid *now*;
- ``info`` carries, on every ``reset`` and ``step``:

  ==========================  ===============================================================
  ``valid_actions``           ``list[str]``, non-empty, unique: what the agent may do next
  ``action_ids``              ``list[int]``: each valid action's index in the env's action
                              vocabulary (``action_space``); ``0..len(valid_actions)-1`` where
                              the env has no fixed vocabulary
  ``action_mask``             ``np.ndarray[int8]`` of shape ``[action_space.n]``: 1 at
                              ``action_ids`` (the vocabulary actions offered now)
  ``success``                 ``bool``: the task was completed (True at most on the last step)
  ``primitive_steps``         ``int``: primitive time steps the last action took (macro actions
                              take several; GAE discounts them with ``gamma ** primitive_steps``)
  ``symbolic_observation``    ``np.ndarray[float32]`` in ``symbolic_observation_space``: the same
                              state as a vector, for non-LLM baselines (an MLP on PPO from scratch)
  ==========================  ===============================================================

Optionally, ``state_dict()`` returns the running episode as plain data (no objects) and
``load_state_dict(state)`` continues it: the trainer's checkpoints save episodes that way, without pickle
(:class:`TextEnv` has both, and :class:`EpisodeReplay` gives them to a deterministic engine by replaying
its episode; an env without them starts a new episode when a run resumes).

Rewards, ``terminated`` and ``truncated`` follow gymnasium. ``action_space`` is a ``Discrete`` over the
env's action vocabulary, whose size bounds the number of valid actions. A policy over the vocabulary (an
MLP on the symbolic observation) picks ``v`` with ``info["action_mask"]`` and steps
``info["action_ids"].index(v)``: the same output means the same action in every state.

Two ways to build one:

- :class:`TextEnv`, the base of the built-in environments: a task written as pure functions of a
  hashable state (initial state, valid actions, transition, description, symbolic vector). The base
  class does the gymnasium bookkeeping, and because the transition is pure, :meth:`TextEnv.plan`
  finds an optimal action sequence by search (the scripted expert of the tests and demonstrations).
- :class:`TextEnvWrapper`, which turns any gymnasium env into this contract from two callables: one
  describing the state as text, one listing the valid actions.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Generic, Literal, NamedTuple, TypeVar

import gymnasium
import numpy as np
from gymnasium import spaces

#: Characters a prompt may contain (``gymnasium.spaces.Text`` checks every observation against it).
PROMPT_CHARSET = string.ascii_letters + string.digits + string.punctuation + " \n"
#: Longest prompt, in characters, that the observation space admits.
MAX_PROMPT_CHARS = 8192

InvalidActionMode = Literal["raise", "noop"]
State = TypeVar("State", bound=Hashable)


def prompt_space() -> spaces.Text:
    """The observation space of every text environment: a prompt of printable ASCII."""
    return spaces.Text(max_length=MAX_PROMPT_CHARS, min_length=1, charset=PROMPT_CHARSET)


def check_valid_actions(actions: Sequence[str], max_actions: int, where: str) -> list[str]:
    """Check the contract on a list of valid actions and return it as a ``list``.

    Raises:
        ValueError: the list is empty, has duplicates or is longer than the action space.
        TypeError: an action is not a non-empty ``str``.
    """
    actions = list(actions)
    if not actions:
        raise ValueError(
            f"{where}: the list of valid actions is empty; every state must offer at least one action."
        )
    for index, action in enumerate(actions):
        if not isinstance(action, str) or not action.strip():
            raise TypeError(
                f"{where}: valid action {index} is {action!r}; every action must be a non-empty str."
            )
    duplicates = sorted({a for a in actions if actions.count(a) > 1})
    if duplicates:
        raise ValueError(f"{where}: duplicated valid actions {duplicates}; action texts must be unique.")
    if len(actions) > max_actions:
        raise ValueError(
            f"{where}: {len(actions)} valid actions but the action space holds {max_actions}; "
            "raise max_actions."
        )
    return actions


def check_action_index(action: Any, valid_actions: Sequence[str], where: str) -> int | None:
    """Return ``action`` as an ``int`` if it indexes ``valid_actions``, else ``None``.

    Raises:
        TypeError: the action is not an integer (``bool`` and floats are refused, never rounded).
    """
    if isinstance(action, np.ndarray) and action.shape == ():
        action = action.item()
    if isinstance(action, bool) or not isinstance(action, int | np.integer):
        raise TypeError(
            f"{where}: the action must be an int index into info['valid_actions'], got {action!r} "
            f"({type(action).__name__})."
        )
    action = int(action)
    return action if 0 <= action < len(valid_actions) else None


def invalid_action_error(action: int, valid_actions: Sequence[str], where: str) -> ValueError:
    listing = ", ".join(f"{i}: {a!r}" for i, a in enumerate(valid_actions))
    return ValueError(
        f"{where}: action {action} is not a valid action index; this step offers {len(valid_actions)} "
        f"actions (0..{len(valid_actions) - 1}): {listing}. Pick an index into info['valid_actions'], "
        "or build the env with invalid_action='noop' to make it a penalized no-op."
    )


def join_phrases(phrases: Sequence[str]) -> str:
    """English enumeration: ``["a", "b", "c"]`` -> ``"a, b and c"``."""
    if len(phrases) < 2:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def action_mask(action_ids: Sequence[int], max_actions: int) -> np.ndarray:
    """``int8[max_actions]`` with ones at ``action_ids`` (the vocabulary actions offered now)."""
    mask = np.zeros(max_actions, dtype=np.int8)
    mask[list(action_ids)] = 1
    return mask


class Transition(NamedTuple, Generic[State]):
    """The outcome of one (macro) action in a :class:`TextEnv`."""

    state: State
    reward: float
    terminated: bool
    success: bool
    primitive_steps: int = 1


class TextEnv(gymnasium.Env[str, int], Generic[State]):
    """Base class of the built-in text environments: a task as pure functions of a hashable state.

    Subclasses implement :meth:`initial_state`, :meth:`valid_actions`, :meth:`transition`,
    :meth:`describe` and :meth:`symbolic`, and call ``super().__init__`` with the sizes. This class
    keeps the episode (current state, elapsed primitive steps), checks actions, assembles ``info``
    and truncates at ``max_primitive_steps``: a macro action started before the limit runs to its end,
    then the episode is truncated.

    Invalid actions. An index outside the current valid actions raises ``ValueError`` by default
    (``invalid_action="raise"``); with ``invalid_action="noop"`` it leaves the state unchanged, costs one
    primitive step and gives ``invalid_action_penalty`` as reward. Nothing wraps around. Stepping an
    episode that has ended raises ``RuntimeError``: call ``reset()``.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        *,
        max_actions: int,
        symbolic_size: int,
        max_primitive_steps: int,
        invalid_action: InvalidActionMode = "raise",
        invalid_action_penalty: float = -0.1,
        render_mode: str | None = None,
    ):
        if invalid_action not in ("raise", "noop"):
            raise ValueError(f"invalid_action={invalid_action!r}; use 'raise' or 'noop'.")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode={render_mode!r}; supported: {self.metadata['render_modes']} or None."
            )
        if max_primitive_steps < 1:
            raise ValueError(f"max_primitive_steps={max_primitive_steps}; it must be >= 1.")
        self.observation_space = prompt_space()
        self.action_space = spaces.Discrete(max_actions)
        self.symbolic_observation_space = spaces.Box(-1.0, 1.0, shape=(symbolic_size,), dtype=np.float32)
        self.max_primitive_steps = max_primitive_steps
        self.invalid_action = invalid_action
        self.invalid_action_penalty = invalid_action_penalty
        self.render_mode = render_mode
        self.state: State | None = None
        self.elapsed_primitive_steps = 0
        self.ended = False

    # -- the task: pure functions of the state, written by each environment --------------------------
    def initial_state(self) -> State:
        """The state an episode starts in; may draw from ``self.np_random``."""
        raise NotImplementedError

    def valid_actions(self, state: State) -> list[str]:
        """The action texts valid in ``state``; index ``i`` of this list is action ``i``."""
        raise NotImplementedError

    def action_ids(self, state: State) -> list[int]:
        """Each valid action's index in the env's vocabulary (``action_space``). By default the
        vocabulary is the list of slots: valid action ``i`` is vocabulary action ``i``."""
        return list(range(len(self.valid_actions(state))))

    def transition(self, state: State, action: int) -> Transition[State]:
        """Apply valid action ``action`` to ``state``; must not mutate ``state``."""
        raise NotImplementedError

    def describe(self, state: State) -> str:
        """The prompt for ``state``: a text that the chosen action completes."""
        raise NotImplementedError

    def symbolic(self, state: State) -> np.ndarray:
        """``float32[symbolic_size]`` in [-1, 1]: the state as a vector for non-LLM baselines."""
        raise NotImplementedError

    # -- gymnasium API -------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self.state = self.initial_state()
        self.elapsed_primitive_steps = 0
        self.ended = False
        return self.describe(self.state), self._info(success=False, primitive_steps=0)

    def step(self, action: int) -> tuple[str, float, bool, bool, dict[str, Any]]:
        where = type(self).__name__
        if self.state is None:
            raise RuntimeError(f"{where}: step() before reset(); call reset() first.")
        if self.ended:
            raise RuntimeError(f"{where}: the episode has ended; call reset() before step().")
        valid = self.valid_actions(self.state)
        index = check_action_index(action, valid, where)
        if index is None:
            if self.invalid_action == "raise":
                raise invalid_action_error(int(action), valid, where)
            outcome = Transition(self.state, self.invalid_action_penalty, terminated=False, success=False)
        else:
            outcome = self.transition(self.state, index)
        self.state = outcome.state
        self.elapsed_primitive_steps += outcome.primitive_steps
        truncated = not outcome.terminated and self.elapsed_primitive_steps >= self.max_primitive_steps
        self.ended = outcome.terminated or truncated
        info = self._info(success=outcome.success, primitive_steps=outcome.primitive_steps)
        return self.describe(self.state), float(outcome.reward), outcome.terminated, truncated, info

    def render(self) -> str | None:
        if self.render_mode == "ansi" and self.state is not None:
            return self.describe(self.state)
        return None

    def _info(self, *, success: bool, primitive_steps: int) -> dict[str, Any]:
        valid = check_valid_actions(self.valid_actions(self.state), self.action_space.n, type(self).__name__)
        ids = list(self.action_ids(self.state))  # a copy: an env may cache its ids per state
        return {
            "valid_actions": valid,
            "action_ids": ids,
            "action_mask": action_mask(ids, self.action_space.n),
            "success": bool(success),
            "primitive_steps": int(primitive_steps),
            "symbolic_observation": self.symbolic(self.state),
        }

    # -- saving and restoring an episode -------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The running episode as plain data (``None``, bools, numbers, strings, tuples, frozensets, lists
        and dicts; no objects), so a checkpoint holds it without pickle: the state, the elapsed primitive
        steps and the random generator. :meth:`load_state_dict` continues the very same episode."""
        if self.state is None:
            raise RuntimeError(f"{type(self).__name__}: state_dict() before reset(); call reset() first.")
        state = (
            self.state._asdict() if hasattr(self.state, "_asdict") else self.state
        )  # a NamedTuple's fields
        return {
            "state": state,
            "elapsed_primitive_steps": self.elapsed_primitive_steps,
            "ended": self.ended,
            "np_random": self.np_random.bit_generator.state,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the episode that :meth:`state_dict` saved (from this env's task and settings)."""
        if self.state is None:
            self.reset()  # the state's type, and a generator to restore into
        state = state_dict["state"]
        if hasattr(self.state, "_fields"):
            if not isinstance(state, Mapping) or set(state) != set(self.state._fields):
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: the saved state has fields "
                    f"{sorted(state) if isinstance(state, Mapping) else type(state).__name__}, this env's "
                    f"{sorted(self.state._fields)}; restore it into an env of the same task."
                )
            state = type(self.state)(**state)
        self.state = state
        self.elapsed_primitive_steps = int(state_dict["elapsed_primitive_steps"])
        self.ended = bool(state_dict["ended"])
        self.np_random.bit_generator.state = state_dict["np_random"]

    # -- the scripted expert -------------------------------------------------------------------------
    def plan(self) -> list[int]:
        """An optimal action sequence from the current state to success.

        Optimal means fewest primitive steps (for macro actions, the highest undiscounted return), then
        fewest actions. Raises ``RuntimeError`` if no sequence within the step limit succeeds.
        """
        from trl_embodied.envs.planner import shortest_plan

        if self.state is None:
            raise RuntimeError(f"{type(self).__name__}: plan() before reset(); call reset() first.")
        budget = self.max_primitive_steps - self.elapsed_primitive_steps
        return shortest_plan(self.state, self.valid_actions, self.transition, max_cost=budget)


class TextEnvWrapper(gymnasium.Wrapper[str, int, Any, Any], gymnasium.utils.RecordConstructorArgs):
    """Turn any gymnasium env into a text environment from two callables.

    Args:
        env: the env to wrap; its actions are whatever ``valid_actions`` maps the texts to.
        describe: ``describe(obs, info) -> str``, the prompt for the wrapped env's observation.
        valid_actions: ``valid_actions(obs, info) -> Mapping[str, action]``, the action texts valid now,
            each mapped to the wrapped env's action (a ``dict`` keeps the order and the texts unique).
        max_actions: the size of the ``Discrete`` action space, an upper bound on len(valid actions).
        is_success: ``is_success(obs, reward, terminated, truncated, info) -> bool``; by default the
            wrapped env's ``info["success"]``, else False.
        invalid_action, invalid_action_penalty: as in :class:`TextEnv` (raise, or a penalized no-op that
            does not step the wrapped env).

    The symbolic observation is the wrapped env's observation flattened (``gymnasium.spaces.flatten``),
    absent where that space cannot be flattened; every action counts one primitive step.
    """

    def __init__(
        self,
        env: gymnasium.Env,
        describe: Callable[[Any, dict[str, Any]], str],
        valid_actions: Callable[[Any, dict[str, Any]], Mapping[str, Any]],
        *,
        max_actions: int = 64,
        is_success: Callable[[Any, float, bool, bool, dict[str, Any]], bool] | None = None,
        invalid_action: InvalidActionMode = "raise",
        invalid_action_penalty: float = -0.1,
    ):
        gymnasium.utils.RecordConstructorArgs.__init__(
            self,
            describe=describe,
            valid_actions=valid_actions,
            max_actions=max_actions,
            is_success=is_success,
            invalid_action=invalid_action,
            invalid_action_penalty=invalid_action_penalty,
        )
        gymnasium.Wrapper.__init__(self, env)
        if invalid_action not in ("raise", "noop"):
            raise ValueError(f"invalid_action={invalid_action!r}; use 'raise' or 'noop'.")
        self._describe = describe
        self._valid_actions = valid_actions
        self._is_success = is_success or (
            lambda obs, reward, terminated, truncated, info: bool(info.get("success"))
        )
        self.invalid_action = invalid_action
        self.invalid_action_penalty = invalid_action_penalty
        self.observation_space = prompt_space()
        self.action_space = spaces.Discrete(max_actions)
        self.symbolic_observation_space = None  # where the observation is no vector (text, say)
        if not isinstance(
            env.observation_space, spaces.Text
        ):  # flattened text is character codes, not a state
            try:
                flat = spaces.flatten_space(env.observation_space)
                self.symbolic_observation_space = spaces.Box(
                    flat.low, flat.high, flat.shape, dtype=np.float32
                )
            except NotImplementedError:
                pass
        self._last: tuple[Any, dict[str, Any]] | None = None
        self._actions: dict[str, Any] = {}
        self._ended = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._ended = False
        return self._observe(obs, info, success=False)

    def step(self, action: int) -> tuple[str, float, bool, bool, dict[str, Any]]:
        where = f"TextEnvWrapper({self.env})"
        if self._last is None:
            raise RuntimeError(f"{where}: step() before reset(); call reset() first.")
        if self._ended:
            raise RuntimeError(f"{where}: the episode has ended; call reset() before step().")
        texts = list(self._actions)
        index = check_action_index(action, texts, where)
        if index is None:
            if self.invalid_action == "raise":
                raise invalid_action_error(int(action), texts, where)
            obs, info = self._last
            prompt, info = self._observe(obs, info, success=False)
            return prompt, float(self.invalid_action_penalty), False, False, info
        obs, reward, terminated, truncated, info = self.env.step(self._actions[texts[index]])
        self._ended = terminated or truncated
        success = bool(self._is_success(obs, reward, terminated, truncated, info))
        prompt, info = self._observe(obs, info, success=success)
        return prompt, float(reward), terminated, truncated, info

    def _observe(self, obs: Any, info: dict[str, Any], *, success: bool) -> tuple[str, dict[str, Any]]:
        self._last = (obs, info)
        where = f"TextEnvWrapper({self.env})"
        actions = dict(self._valid_actions(obs, info))
        valid = check_valid_actions(list(actions), self.action_space.n, where)
        self._actions = actions
        info = dict(info)
        info.update(
            valid_actions=valid,
            action_ids=list(range(len(valid))),
            action_mask=action_mask(range(len(valid)), self.action_space.n),
            success=success,
            primitive_steps=1,
        )
        if self.symbolic_observation_space is not None:
            info["symbolic_observation"] = spaces.flatten(self.env.observation_space, obs).astype(np.float32)
        return self._describe(obs, info), info


class SymbolicObservation(gymnasium.Wrapper, gymnasium.utils.RecordConstructorArgs):
    """Swap a text environment's prompt for its symbolic observation vector (for MLP baselines).

    The observation becomes ``info["symbolic_observation"]`` and the observation space the env's
    ``symbolic_observation_space``; everything else, ``info`` included, passes through.
    """

    def __init__(self, env: gymnasium.Env):
        gymnasium.utils.RecordConstructorArgs.__init__(self)
        gymnasium.Wrapper.__init__(self, env)
        self.observation_space = env.get_wrapper_attr("symbolic_observation_space")

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        _, info = self.env.reset(**kwargs)
        return info["symbolic_observation"], info

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        _, reward, terminated, truncated, info = self.env.step(action)
        return info["symbolic_observation"], reward, terminated, truncated, info


class ActionHistory(gymnasium.Wrapper, gymnasium.utils.RecordConstructorArgs):
    """Begin each prompt with the last ``history_length`` actions of the episode, oldest first.

    A policy that sees only the current state cannot tell the first visit of a state from the fifth, and
    played greedily it repeats itself wherever its argmax leads back (grab, put back, grab...). With the
    actions taken in the prompt, the same state after a different past is a different input. The prompt
    of an episode's first state is unchanged; later ones read ``"Your last actions: open the fridge, grab
    the milk. "`` and then the env's own prompt. ``info`` passes through untouched.

    Args:
        env: a text environment.
        history_length: how many past actions the prompt carries (>= 1).
        template: the prefix, with ``{actions}`` for the actions joined by ``", "``.
    """

    def __init__(
        self, env: gymnasium.Env, history_length: int, template: str = "Your last actions: {actions}. "
    ):
        if not isinstance(history_length, int) or history_length < 1:
            raise ValueError(
                f"history_length={history_length!r}; give the number of past actions, at least 1."
            )
        if "{actions}" not in template:
            raise ValueError(f"template={template!r} has no '{{actions}}' placeholder for the actions.")
        gymnasium.utils.RecordConstructorArgs.__init__(self, history_length=history_length, template=template)
        gymnasium.Wrapper.__init__(self, env)
        self.history_length = history_length
        self.template = template
        self.history: list[str] = []
        self._valid_actions: list[str] = []

    def _prompt(self, prompt: str) -> str:
        return self.template.format(actions=", ".join(self.history)) + prompt if self.history else prompt

    def reset(self, **kwargs: Any) -> tuple[str, dict[str, Any]]:
        prompt, info = self.env.reset(**kwargs)
        self.history, self._valid_actions = [], list(info.get("valid_actions", []))
        return self._prompt(prompt), info

    def step(self, action: int) -> tuple[str, float, bool, bool, dict[str, Any]]:
        prompt, reward, terminated, truncated, info = self.env.step(action)
        if 0 <= int(action) < len(self._valid_actions):  # an invalid index (a no-op) is no action taken
            self.history = (self.history + [self._valid_actions[int(action)]])[-self.history_length :]
        self._valid_actions = list(info.get("valid_actions", []))
        return self._prompt(prompt), reward, terminated, truncated, info

    def state_dict(self) -> dict[str, Any]:
        """The wrapped env's episode (``AttributeError`` where it cannot save one) and the history."""
        inner = self.env.get_wrapper_attr("state_dict")()
        return {"env": inner, "history": list(self.history), "valid_actions": list(self._valid_actions)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env.get_wrapper_attr("load_state_dict")(state["env"])
        self.history, self._valid_actions = list(state["history"]), list(state["valid_actions"])


class EpisodeNotRestored(RuntimeError):
    """Replaying a saved episode did not lead back to its saved state (see :class:`EpisodeReplay`)."""


class EpisodeReplay(gymnasium.Wrapper, gymnasium.utils.RecordConstructorArgs):
    """Save and restore a deterministic env's running episode by replaying it.

    Engines that cannot export their state (minigrid's BabyAI, TextWorld, ScienceWorld's Java process) can
    still be put back where they were: the same reset (its seed, options and, for an unseeded reset, the
    random generator it drew from), then the same actions. :meth:`state_dict` is that recipe as plain data,
    :meth:`load_state_dict` replays it, so a resumed training run continues the episode instead of starting
    a new one. The replay must end in the prompt and valid actions saved with it; where it does not (an
    engine with randomness of its own), :class:`EpisodeNotRestored` is raised and the trainer starts that
    slot's episode afresh, with a warning.

    A restore costs one reset and one ``step`` per action taken so far in the episode.
    """

    def __init__(self, env: gymnasium.Env):
        gymnasium.utils.RecordConstructorArgs.__init__(self)
        gymnasium.Wrapper.__init__(self, env)
        self._reset_arguments: dict[str, Any] | None = None
        self._actions: list[int] = []
        self._last: tuple[str, list[str]] = ("", [])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        # An unseeded reset draws from the env's generator as it is now: that state is the reset's seed.
        generator = None if seed is not None else self.env.unwrapped.np_random.bit_generator.state
        self._reset_arguments = {"seed": seed, "options": options, "generator": generator}
        self._actions = []
        prompt, info = self.env.reset(seed=seed, options=options)
        self._last = (prompt, list(info["valid_actions"]))
        return prompt, info

    def step(self, action: int):
        prompt, reward, terminated, truncated, info = self.env.step(action)
        self._actions.append(int(action))
        self._last = (prompt, list(info["valid_actions"]))
        return prompt, reward, terminated, truncated, info

    def state_dict(self) -> dict[str, Any]:
        """The running episode as plain data: its reset, the actions taken since, and where they led."""
        if self._reset_arguments is None:
            raise RuntimeError(f"{self}: state_dict() before reset(); call reset() first.")
        prompt, valid_actions = self._last
        return {
            "reset": dict(self._reset_arguments),
            "actions": list(self._actions),
            "prompt": prompt,
            "valid_actions": list(valid_actions),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replay the saved episode; :class:`EpisodeNotRestored` if it ends anywhere but the saved state."""
        reset = state["reset"]
        if reset["generator"] is not None:
            self.env.unwrapped.np_random.bit_generator.state = reset["generator"]
        not_restored = (
            f"{self.unwrapped}: replaying the episode's {len(state['actions'])} actions from its reset did not "
            "lead back to its saved prompt and valid actions; the env is not deterministic, so its episode "
            "cannot be restored by replay."
        )
        self.reset(seed=reset["seed"], options=reset["options"])
        try:
            for action in state["actions"]:
                self.step(action)
        except (ValueError, RuntimeError) as error:  # the replay went elsewhere: an action not offered there
            raise EpisodeNotRestored(f"{not_restored} ({error})") from error
        if self._last != (state["prompt"], list(state["valid_actions"])):
            raise EpisodeNotRestored(not_restored)


def with_history(env: str | Callable[[], gymnasium.Env], history_length: int) -> Callable[[], gymnasium.Env]:
    """A factory of ``env`` (a gymnasium id or a factory) wrapped in :class:`ActionHistory`; a picklable
    partial, so vector envs and processes can take it."""
    if isinstance(env, str):
        from trl_embodied.envs.registration import make_env  # registration imports this module

        env = functools.partial(make_env, env)
    return functools.partial(_make_with_history, env, history_length)


def _make_with_history(factory: Callable[[], gymnasium.Env], history_length: int) -> ActionHistory:
    return ActionHistory(factory(), history_length)
