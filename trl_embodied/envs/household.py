"""A symbolic household in the style of TWOSOME's VirtualHome tasks (not the 3D simulator).

One home of four rooms (kitchen, bathroom, bedroom, living room). Furniture is fixed in its room and
has affordances (a container, openable, switchable, a surface, sittable); a task adds the objects it
needs, each starting in a room, in a container or on a surface. The agent is in one room, may stand
close to one object, holds up to two objects and may sit. Objects lying loose in a room (not in or on
furniture) lie together: close to one of them, the agent reaches them all.

Tasks are data (:class:`HouseholdTask`: objects, initial placement, goal predicates). Their action
vocabulary comes from one grammar over the task's objects; each action applies only where its
preconditions hold:

======================================  =======================================================
``walk to the <room>``                  another room (not while sitting)
``walk to the <object>``                an object in this room, not within reach, not held, not
                                        inside a closed container (not while sitting)
``grab the <object>``                   within reach (close to it, to what holds it, or to the
                                        objects it lies with), not held, with a free hand
``put the <object> in/on the <thing>``  holding it, next to an open container or a surface; only
                                        where the goal wants it (``HouseholdTask.puts``)
``open / close the <thing>``            next to it while it is closed / open
``switch on / off the <thing>``         next to it while it is off / on
``sit on / stand up from the <thing>``  next to it / sitting on it
======================================  =======================================================

A state offers only the applicable actions (``valid_actions="applicable"``, the paper's scheme: 1-8
actions a state on Entertainment, 4.4 on average), so no offered action is a no-op.
``valid_actions="all"`` offers the whole vocabulary in every state, where an inapplicable action does
nothing and still costs a step: a much harder variant (64-75% of a uniform random walk's steps are
no-ops), kept for comparison.
``info["action_ids"]`` gives each offered action's index in the vocabulary (``action_space``: 10 actions
in Food Preparation, 17 in Entertainment) and ``info["action_mask"]`` marks them, so a policy over the
vocabulary (the MLP baseline) means the same action by the same output in every state.

Reward: +1 on success, which ends the episode; 0 otherwise. Episodes are truncated after 50 steps.
Optimal plans: 6 steps (Food Preparation), 11 (Entertainment); the other tasks are unseen during
training, for generalization tests. A task of the user's making plays the same way:
``HouseholdEnv(task=HouseholdTask(...))``, and :func:`register_household_task` gives it a gymnasium id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np

from trl_embodied.envs.core import InvalidActionMode, TextEnv, Transition, join_phrases

ROOMS = ("kitchen", "bathroom", "bedroom", "living room")
HANDS = 2
PLURAL_NOUNS = frozenset({"chips", "clothes"})


@dataclass(frozen=True)
class Furniture:
    room: str
    container: bool = False  # things go "in" it
    surface: bool = False  # things go "on" it
    openable: bool = False
    switchable: bool = False
    sittable: bool = False

    @property
    def receptacle(self) -> bool:
        return self.container or self.surface


#: The home's fixed furniture. A task brings in those it names.
FURNITURE: dict[str, Furniture] = {
    "microwave": Furniture("kitchen", container=True, openable=True),
    "fridge": Furniture("kitchen", container=True, openable=True),
    "sink": Furniture("kitchen", container=True),
    "faucet": Furniture("kitchen", switchable=True),
    "kitchen table": Furniture("kitchen", surface=True),
    "washing machine": Furniture("bathroom", container=True, openable=True, switchable=True),
    "bed": Furniture("bedroom", surface=True),
    "tv": Furniture("living room", switchable=True),
    "sofa": Furniture("living room", sittable=True),
    "coffee table": Furniture("living room", surface=True),
}


@dataclass(frozen=True)
class HouseholdTask:
    """A household task as data.

    Args:
        name: the task's name (``FoodPreparation``).
        goal: completes "In order to <goal>, your next step is to".
        items: the objects the agent can grab, each with where it starts: a room name, or the name of
            a piece of furniture it is in / on (the furniture's affordance decides which).
        furniture: the furniture this task uses (names from :data:`FURNITURE`), in action order.
        goal_predicates: all must hold for success; each is ``(predicate, *args)`` with predicates
            ``inside(obj, container)``, ``on(obj, surface)``, ``closed(thing)``, ``switched_on(thing)``,
            ``agent_in(room)``, ``sitting_on(thing)``.
        start_room: where the agent starts.
        initially_open, initially_on: furniture open / switched on at the start.
        puts: the ``(item, receptacle)`` pairs the vocabulary has a put action for. ``None`` (default):
            the pairs the goal names (its ``inside`` / ``on`` predicates), as in the paper's vocabularies,
            whose puts all lead toward the goal (Food Preparation has one: the pancake in the microwave).
            Name more pairs for a task that needs a thing set down on the way.
    """

    name: str
    goal: str
    items: dict[str, str]
    furniture: tuple[str, ...]
    goal_predicates: tuple[tuple[str, ...], ...]
    start_room: str = "kitchen"
    initially_open: frozenset[str] = field(default_factory=frozenset)
    initially_on: frozenset[str] = field(default_factory=frozenset)
    puts: tuple[tuple[str, str], ...] | None = None

    @property
    def objects(self) -> tuple[str, ...]:
        return (*self.items, *self.furniture)

    @property
    def put_pairs(self) -> tuple[tuple[str, str], ...]:
        """The ``(item, receptacle)`` pairs with a put action (see ``puts``)."""
        if self.puts is not None:
            return tuple(tuple(pair) for pair in self.puts)  # lists of lists too
        return tuple((args[0], args[1]) for name, *args in self.goal_predicates if name in ("inside", "on"))


#: The paper's two training tasks, then the unseen ones (new objects and goals in the same home).
TASKS: dict[str, HouseholdTask] = {
    task.name: task
    for task in (
        HouseholdTask(
            name="FoodPreparation",
            goal="heat up the pancake in the microwave",
            items={"pancake": "kitchen"},
            furniture=("microwave",),
            goal_predicates=(
                ("inside", "pancake", "microwave"),
                ("closed", "microwave"),
                ("agent_in", "kitchen"),
            ),
        ),
        HouseholdTask(
            name="Entertainment",
            goal="watch TV on the sofa with chips and milk on the coffee table",
            items={"chips": "kitchen", "milk": "kitchen"},
            furniture=("coffee table", "tv", "sofa"),
            goal_predicates=(
                ("on", "chips", "coffee table"),
                ("on", "milk", "coffee table"),
                ("switched_on", "tv"),
                ("sitting_on", "sofa"),
                ("agent_in", "living room"),
            ),
        ),
        HouseholdTask(
            name="HeatCheese",
            goal="heat up the cheese in the microwave",
            items={"cheese": "fridge"},
            furniture=("fridge", "microwave"),
            goal_predicates=(
                ("inside", "cheese", "microwave"),
                ("closed", "microwave"),
                ("agent_in", "kitchen"),
            ),
            start_room="living room",
        ),
        HouseholdTask(
            name="HeatHamburger",
            goal="heat up the hamburger in the microwave",
            items={"hamburger": "coffee table"},
            furniture=("coffee table", "microwave"),
            goal_predicates=(
                ("inside", "hamburger", "microwave"),
                ("closed", "microwave"),
                ("agent_in", "kitchen"),
            ),
            start_room="bedroom",
        ),
        HouseholdTask(
            name="StoreApplePie",
            goal="put the apple pie in the fridge",
            items={"apple pie": "kitchen table"},
            furniture=("kitchen table", "fridge"),
            goal_predicates=(("inside", "apple pie", "fridge"), ("closed", "fridge")),
        ),
        HouseholdTask(
            name="WashPlate",
            goal="wash the plate in the sink",
            items={"plate": "coffee table"},
            furniture=("coffee table", "sink", "faucet"),
            goal_predicates=(("inside", "plate", "sink"), ("switched_on", "faucet")),
            start_room="living room",
        ),
        HouseholdTask(
            name="DoLaundry",
            goal="wash the clothes in the washing machine",
            items={"clothes": "bed"},
            furniture=("bed", "washing machine"),
            goal_predicates=(
                ("inside", "clothes", "washing machine"),
                ("closed", "washing machine"),
                ("switched_on", "washing machine"),
            ),
            start_room="bedroom",
        ),
    )
}
TRAINING_TASKS = ("FoodPreparation", "Entertainment")
UNSEEN_TASKS = tuple(name for name in TASKS if name not in TRAINING_TASKS)


class HomeState(NamedTuple):
    room: str
    close_to: str | None
    sitting_on: str | None
    locations: tuple[str, ...]  # per item: a room, "held", or "in:<furniture>" / "on:<furniture>"
    open: frozenset[str]
    switched_on: frozenset[str]


ValidActionSet = Literal["applicable", "all"]
VALID_ACTION_SETS: tuple[str, ...] = ("applicable", "all")
PREDICATE_ARITY = {"inside": 2, "on": 2, "closed": 1, "switched_on": 1, "agent_in": 1, "sitting_on": 1}


def _preposition(furniture: str) -> str:
    return "in" if FURNITURE[furniture].container else "on"


class HouseholdEnv(TextEnv[HomeState]):
    """One symbolic household task (see the module docstring).

    Args:
        task: a :class:`HouseholdTask`, or the name of a built-in one from :data:`TASKS`
            (``FoodPreparation``, ``Entertainment``, or an unseen task).
        valid_actions: ``"applicable"`` (default, the paper's scheme): a state offers the actions whose
            preconditions hold. ``"all"``: every action of the vocabulary in every state, the
            inapplicable ones no-ops (a harder variant).
        max_steps: truncation limit (paper: 50).
        invalid_action, invalid_action_penalty, render_mode: see :class:`TextEnv`.
    """

    def __init__(
        self,
        task: str | HouseholdTask = "FoodPreparation",
        *,
        valid_actions: ValidActionSet = "applicable",
        max_steps: int = 50,
        invalid_action: InvalidActionMode = "raise",
        invalid_action_penalty: float = 0.0,
        render_mode: str | None = None,
    ):
        if isinstance(task, str):
            if task not in TASKS:
                raise ValueError(
                    f"unknown household task {task!r}; choose one of {sorted(TASKS)}, or pass a "
                    "HouseholdTask of your own."
                )
            task = TASKS[task]
        elif not isinstance(task, HouseholdTask):
            raise TypeError(
                f"task must be a HouseholdTask or a built-in task's name, got {type(task).__name__}."
            )
        if valid_actions not in VALID_ACTION_SETS:
            raise ValueError(f"valid_actions={valid_actions!r}; use one of {VALID_ACTION_SETS}.")
        self._check_task(task)
        self.task = task
        self.valid_action_set = valid_actions
        self.items = tuple(task.items)
        self.actions = self._action_grammar(task)
        self.action_texts = [self._render_action(a) for a in self.actions]
        receptacles = [f for f in task.furniture if FURNITURE[f].receptacle]
        # Where each item can be: a room, held, or in/on each receptacle of the task.
        self._item_locations = [*ROOMS, "held", *(f"{_preposition(f)}:{f}" for f in receptacles)]
        symbolic_size = len(ROOMS) + 1 + len(task.objects) + len(self.items) * len(self._item_locations)
        symbolic_size += 2 * len(task.furniture)
        self._applicable: dict[HomeState, list[int]] = {}  # the applicable vocabulary ids, per state
        super().__init__(
            max_actions=len(self.actions),
            symbolic_size=symbolic_size,
            max_primitive_steps=max_steps,
            invalid_action=invalid_action,
            invalid_action_penalty=invalid_action_penalty,
            render_mode=render_mode,
        )

    @staticmethod
    def _check_task(task: HouseholdTask) -> None:
        """Refuse a malformed task with the problem and the fix named."""

        def fail(problem: str) -> ValueError:
            return ValueError(f"household task {task.name!r}: {problem}")

        def can_hold(item: str, furniture: str) -> bool:
            """``item`` is the task's, and ``furniture`` a container or surface of the task to put it in / on."""
            return item in task.items and furniture in task.furniture and FURNITURE[furniture].receptacle

        for name in task.furniture:
            if name not in FURNITURE:
                raise fail(f"unknown furniture {name!r}; known: {sorted(FURNITURE)}.")
        if len(set(task.objects)) != len(task.objects):
            raise fail(f"object names repeat in {list(task.objects)}; give each object one name.")
        if not task.items:
            raise fail(
                "it has no items; name at least one object to grab, e.g. items={'pancake': 'kitchen'}."
            )
        for item, where in task.items.items():
            if item in FURNITURE:
                raise fail(f"item {item!r} is the name of a piece of furniture; rename the item.")
            if where not in ROOMS and where not in task.furniture:
                raise fail(
                    f"item {item!r} starts at {where!r}, which is neither a room ({', '.join(ROOMS)}) "
                    f"nor furniture of the task {list(task.furniture)}."
                )
            if where in task.furniture and not FURNITURE[where].receptacle:
                raise fail(
                    f"item {item!r} starts at {where!r}, which holds nothing; use a room or a receptacle."
                )
        for pair in task.puts or ():
            if len(pair) != 2 or not can_hold(*pair):
                raise fail(
                    f"puts names {pair!r}; each entry is (item, receptacle) with an item of the task and "
                    "a container or surface among its furniture."
                )
        if task.start_room not in ROOMS:
            raise fail(f"start_room={task.start_room!r}; choose one of {ROOMS}.")
        for field_name, affordance in (("initially_open", "openable"), ("initially_on", "switchable")):
            for name in getattr(task, field_name):
                if name not in task.furniture or not getattr(FURNITURE[name], affordance):
                    raise fail(
                        f"{field_name} names {name!r}, which is no {affordance} furniture of the task."
                    )
        if not task.goal_predicates:
            raise fail("goal_predicates is empty; success needs at least one predicate.")
        for predicate in task.goal_predicates:
            name, *args = predicate
            if PREDICATE_ARITY.get(name) != len(args):
                raise fail(
                    f"goal predicate {predicate!r}: use one of "
                    f"{', '.join(f'{p}/{n}' for p, n in PREDICATE_ARITY.items())} (name/arguments)."
                )
            for arg in args:
                if arg not in task.objects and arg not in ROOMS:
                    raise fail(f"goal predicate {predicate!r} names {arg!r}, which is no object of the task.")
            if name in ("inside", "on") and not can_hold(*args):
                raise fail(
                    f"goal predicate {predicate!r}: {name} takes an item of the task, then a container or "
                    "surface among its furniture."
                )

    @staticmethod
    def _action_grammar(task: HouseholdTask) -> list[tuple[str, ...]]:
        """The task's action vocabulary, generated from its objects' affordances in a fixed order."""
        actions: list[tuple[str, ...]] = [("walk", room) for room in ROOMS]
        actions += [("walk", obj) for obj in task.objects]
        actions += [("grab", item) for item in task.items]
        puts = set(task.put_pairs)
        for item in task.items:
            actions += [("put", item, f) for f in task.furniture if (item, f) in puts]
        for f in task.furniture:
            kind = FURNITURE[f]
            if kind.openable:
                actions += [("open", f), ("close", f)]
            if kind.switchable:
                actions += [("switch_on", f), ("switch_off", f)]
            if kind.sittable:
                actions += [("sit", f), ("stand", f)]
        return actions

    @staticmethod
    def _render_action(action: tuple[str, ...]) -> str:
        verb, *args = action
        names = [_display(a) for a in args]
        if verb == "put":
            return f"put the {names[0]} {_preposition(args[1])} the {names[1]}"
        template = {
            "walk": "walk to the {}",
            "grab": "grab the {}",
            "open": "open the {}",
            "close": "close the {}",
            "switch_on": "switch on the {}",
            "switch_off": "switch off the {}",
            "sit": "sit on the {}",
            "stand": "stand up from the {}",
        }[verb]
        return template.format(*names)

    # -- state queries -------------------------------------------------------------------------------
    def room_of(self, state: HomeState, obj: str) -> str:
        if obj not in self.task.items:
            return FURNITURE[obj].room
        where = state.locations[self.items.index(obj)]
        if where == "held":
            return state.room
        if ":" in where:
            return self.room_of(state, where.split(":", 1)[1])
        return where

    def hidden(self, state: HomeState, item: str) -> bool:
        """Inside a closed container."""
        where = state.locations[self.items.index(item)]
        if not where.startswith("in:"):
            return False
        container = where[3:]
        return FURNITURE[container].openable and container not in state.open

    def visible(self, state: HomeState) -> list[str]:
        """The task's objects the agent notices: in its room, neither held nor in a closed container."""
        return [
            obj
            for obj in self.task.objects
            if self.room_of(state, obj) == state.room
            and not (obj in self.task.items and (self.held(state, obj) or self.hidden(state, obj)))
        ]

    def held(self, state: HomeState, item: str) -> bool:
        return state.locations[self.items.index(item)] == "held"

    def within_reach(self, state: HomeState, item: str) -> bool:
        """The item can be grabbed from where the agent stands: close to it, to the furniture holding
        it (if open), or to a loose object it lies with."""
        if state.close_to is None or self.held(state, item) or self.hidden(state, item):
            return False
        where = state.locations[self.items.index(item)]
        if state.close_to == item or where.endswith(f":{state.close_to}"):
            return True
        # Close to a loose object (or holding it, grabbed where it lay): the spot where this room's loose
        # objects lie. Loose objects never go back to the floor, so that spot is where they started.
        neighbour = state.close_to
        return (
            where == state.room
            and neighbour in self.task.items
            and self.task.items[neighbour] == where
            and state.locations[self.items.index(neighbour)] in (where, "held")
        )

    def holds(self, state: HomeState, predicate: tuple[str, ...]) -> bool:
        name, *args = predicate
        if name in ("inside", "on"):
            item, furniture = args
            return (
                state.locations[self.items.index(item)] == f"{'in' if name == 'inside' else 'on'}:{furniture}"
            )
        if name == "closed":
            return args[0] not in state.open
        if name == "switched_on":
            return args[0] in state.switched_on
        if name == "agent_in":
            return state.room == args[0]
        if name == "sitting_on":
            return state.sitting_on == args[0]
        raise ValueError(f"task {self.task.name!r}: unknown goal predicate {name!r}.")

    # -- the task ------------------------------------------------------------------------------------
    def initial_state(self) -> HomeState:
        locations = tuple(
            where if where in ROOMS else f"{_preposition(where)}:{where}"
            for where in self.task.items.values()
        )
        return HomeState(
            self.task.start_room, None, None, locations, self.task.initially_open, self.task.initially_on
        )

    def action_ids(self, state: HomeState) -> list[int]:
        """Vocabulary indices of the actions offered in ``state``, in vocabulary order."""
        if self.valid_action_set == "all":
            return list(range(len(self.actions)))
        if state not in self._applicable:
            self._applicable[state] = [
                i
                for i, (verb, *args) in enumerate(self.actions)
                if self._apply(state, verb, args) is not None
            ]
        return self._applicable[state]

    def valid_actions(self, state: HomeState) -> list[str]:
        return [self.action_texts[i] for i in self.action_ids(state)]

    def transition(self, state: HomeState, action: int) -> Transition[HomeState]:
        verb, *args = self.actions[self.action_ids(state)[action]]
        next_state = self._apply(state, verb, args) or state
        success = all(self.holds(next_state, p) for p in self.task.goal_predicates)
        return Transition(next_state, 1.0 if success else 0.0, terminated=success, success=success)

    def _apply(self, s: HomeState, verb: str, args: list[str]) -> HomeState | None:
        """The next state, or ``None`` where the action's preconditions fail (it would change nothing)."""
        target = args[0]
        if verb == "walk":
            if s.sitting_on is not None:
                return None
            if target in ROOMS:
                return s._replace(room=target, close_to=None) if target != s.room else None
            if target not in self.visible(s) or target == s.close_to:
                return None
            if target in self.task.items and self.within_reach(s, target):
                return None
            return s._replace(close_to=target)
        if verb == "stand":
            return s._replace(sitting_on=None) if s.sitting_on == target else None
        if verb == "grab":
            if not self.within_reach(s, target) or s.locations.count("held") >= HANDS:
                return None
            where = s.locations[self.items.index(target)]
            # Grabbed from furniture, the agent stands at that furniture.
            close_to = where.split(":", 1)[1] if ":" in where else s.close_to
            return s._replace(
                close_to=close_to, locations=_replaced(s.locations, self.items.index(target), "held")
            )
        if verb == "put":
            furniture = args[1]
            closed = FURNITURE[furniture].openable and furniture not in s.open
            if not self.held(s, target) or s.close_to != furniture or closed:
                return None
            index = self.items.index(target)
            return s._replace(
                locations=_replaced(s.locations, index, f"{_preposition(furniture)}:{furniture}")
            )
        if s.close_to != target:
            return None
        if verb in ("open", "close"):
            if (target in s.open) == (verb == "open"):
                return None
            return s._replace(open=s.open ^ {target})
        if verb in ("switch_on", "switch_off"):
            if (target in s.switched_on) == (verb == "switch_on"):
                return None
            return s._replace(switched_on=s.switched_on ^ {target})
        if verb == "sit":
            return s._replace(sitting_on=target) if s.sitting_on is None else None
        raise AssertionError(f"unhandled verb {verb!r}")

    def describe(self, state: HomeState) -> str:
        """The prompt, from templates over the task's data: the room, what the agent notices there, what
        is within reach, the furniture's states, what it holds, where it sits or stands, the goal."""
        sentences = ["There are four rooms: the kitchen, bathroom, bedroom, and living room."]
        sentences.append(f"You are in the {state.room}.")
        visible = self.visible(state)
        if visible:
            sentences.append(f"You notice {_join_the(visible)}.")
        for item, where in zip(self.items, state.locations, strict=True):
            if ":" in where and item in visible:
                preposition, furniture = where.split(":", 1)
                sentences.append(
                    f"The {_display(item)} {_be([item])} {preposition} the {_display(furniture)}."
                )
        for f in self.task.furniture:
            if FURNITURE[f].room != state.room:
                continue
            if FURNITURE[f].openable:
                sentences.append(f"The {_display(f)} is {'open' if f in state.open else 'closed'}.")
            if FURNITURE[f].switchable:
                sentences.append(f"The {_display(f)} is {'on' if f in state.switched_on else 'off'}.")
        if state.sitting_on is not None:
            sentences.append(f"You are sitting on the {_display(state.sitting_on)}.")
        elif state.close_to is not None:
            sentences.append(f"You are close to the {_display(state.close_to)}.")
        reachable = [item for item in self.items if self.within_reach(state, item)]
        if reachable:
            sentences.append(
                f"{_join_the(reachable).capitalize()} {_be(reachable)} within your immediate reach."
            )
        elif any(obj in self.task.items for obj in visible):
            sentences.append("Nothing you could grab is within your immediate reach.")
        held = [item for item in self.items if self.held(state, item)]
        if held:
            sentences.append(f"You are holding {_join_the(held)}.")
        else:
            sentences.append("You are not holding anything.")
        sentences.append(f"In order to {self.task.goal}, your next step is to")
        return " ".join(sentences)

    def symbolic(self, state: HomeState) -> np.ndarray:
        features = [float(state.room == room) for room in ROOMS]
        features.append(float(state.sitting_on is not None))
        features += [float(state.close_to == obj) for obj in self.task.objects]
        for where in state.locations:
            features += [float(where == loc) for loc in self._item_locations]
        for f in self.task.furniture:
            features += [float(f in state.open), float(f in state.switched_on)]
        return np.asarray(features, dtype=np.float32)


def household_env_id(name: str) -> str:
    """The gymnasium id of the household task called ``name``: ``trl_embodied/Household-<name>-v0``."""
    return f"trl_embodied/Household-{name}-v0"


def register_household_task(task: HouseholdTask, env_id: str | None = None, **kwargs: Any) -> str:
    """Register a task of your own with gymnasium and return its id (by default
    ``trl_embodied/Household-<name>-v0``), so ``make_env``, ``gymnasium.make``, vector envs and the
    trainer's ``env_id`` take it like a built-in task. ``kwargs`` go to :class:`HouseholdEnv`.

    Raises:
        ValueError: the task is malformed, or the id is taken by another environment.
    """
    import gymnasium

    HouseholdEnv._check_task(task)
    env_id = env_id or household_env_id(task.name)
    wanted = {"task": task, **kwargs}
    if env_id in gymnasium.registry:
        spec = gymnasium.registry[env_id]
        if spec.entry_point is HouseholdEnv and spec.kwargs == wanted:
            return env_id
        raise ValueError(f"the gymnasium id {env_id!r} is taken; pass another env_id.")
    gymnasium.register(id=env_id, entry_point=HouseholdEnv, kwargs=wanted)
    return env_id


def _display(name: str) -> str:
    return "TV" if name == "tv" else name


def _be(names: list[str]) -> str:
    """The verb agreeing with a list of nouns: "the chips are", "the pancake is"."""
    return "are" if len(names) > 1 or names[0] in PLURAL_NOUNS else "is"


def _join_the(names: list[str]) -> str:
    return join_phrases([f"the {_display(n)}" for n in names])


def _replaced(values: tuple[str, ...], index: int, value: str) -> tuple[str, ...]:
    return (*values[:index], value, *values[index + 1 :])
