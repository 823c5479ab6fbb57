"""A symbolic household in the style of TWOSOME's VirtualHome tasks (not the 3D simulator).

One home of four rooms (kitchen, bathroom, bedroom, living room). Furniture is fixed in its room and
has affordances (a container, openable, switchable, a surface, sittable); a task adds the objects it
needs, each starting in a room, in a container or on a surface. The agent is in one room, may stand
close to one object, holds up to two objects and may sit.

Tasks are data (:class:`HouseholdTask`: objects, initial placement, goal predicates); their valid
actions come from one action grammar over the task's objects:

======================================  =======================================================
``walk to the <room>``                  go to a room (not while sitting)
``walk to the <object>``                go next to an object anywhere in the home, unless it is
                                        held or inside a closed container (not while sitting)
``grab the <object>``                   next to it, or to the open container / surface holding
                                        it, with a free hand
``put the <object> in/on the <thing>``  holding it, next to an open container or a surface
``open / close the <thing>``            next to it
``switch on / off the <thing>``         next to it
``sit on / stand up from the <thing>``  next to it / sitting on it
======================================  =======================================================

An action whose preconditions fail does nothing and still costs a step (as in VirtualHome, where the
script fails). Reward: +1 on success, which ends the episode; 0 otherwise. Episodes are truncated
after 50 steps. Food Preparation offers 10 actions (optimal 6 steps) and Entertainment 17 (optimal
11), as in the paper; the other tasks are unseen during training, for generalization tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

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
    """

    name: str
    goal: str
    items: dict[str, str]
    furniture: tuple[str, ...]
    goal_predicates: tuple[tuple[str, ...], ...]
    start_room: str = "kitchen"
    initially_open: frozenset[str] = field(default_factory=frozenset)
    initially_on: frozenset[str] = field(default_factory=frozenset)

    @property
    def objects(self) -> tuple[str, ...]:
        return (*self.items, *self.furniture)


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


def _preposition(furniture: str) -> str:
    return "in" if FURNITURE[furniture].container else "on"


class HouseholdEnv(TextEnv[HomeState]):
    """One symbolic household task (see the module docstring).

    Args:
        task: a name from :data:`TASKS` (``FoodPreparation``, ``Entertainment``, or an unseen task).
        max_steps: truncation limit (paper: 50).
        invalid_action, invalid_action_penalty, render_mode: see :class:`TextEnv`.
    """

    def __init__(
        self,
        task: str = "FoodPreparation",
        *,
        max_steps: int = 50,
        invalid_action: InvalidActionMode = "raise",
        invalid_action_penalty: float = 0.0,
        render_mode: str | None = None,
    ):
        if task not in TASKS:
            raise ValueError(f"unknown household task {task!r}; choose one of {sorted(TASKS)}.")
        self.task = TASKS[task]
        self._check_task(self.task)
        self.items = tuple(self.task.items)
        self.actions = self._action_grammar(self.task)
        self.action_texts = [self._render_action(a) for a in self.actions]
        receptacles = [f for f in self.task.furniture if FURNITURE[f].receptacle]
        # Where each item can be: a room, held, or in/on each receptacle of the task.
        self._item_locations = [*ROOMS, "held", *(f"{_preposition(f)}:{f}" for f in receptacles)]
        symbolic_size = len(ROOMS) + 1 + len(self.task.objects) + len(self.items) * len(self._item_locations)
        symbolic_size += 2 * len(self.task.furniture)
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
        for name in task.furniture:
            if name not in FURNITURE:
                raise ValueError(
                    f"task {task.name!r}: unknown furniture {name!r}; known: {sorted(FURNITURE)}."
                )
        for item, where in task.items.items():
            if where not in ROOMS and where not in task.furniture:
                raise ValueError(
                    f"task {task.name!r}: item {item!r} starts at {where!r}, which is neither a room "
                    "nor furniture of the task."
                )

    @staticmethod
    def _action_grammar(task: HouseholdTask) -> list[tuple[str, ...]]:
        """The task's actions, generated from its objects' affordances in a fixed order."""
        actions: list[tuple[str, ...]] = [("walk", room) for room in ROOMS]
        actions += [("walk", obj) for obj in task.objects]
        actions += [("grab", item) for item in task.items]
        for item in task.items:
            actions += [("put", item, f) for f in task.furniture if FURNITURE[f].receptacle]
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
        if obj in FURNITURE and obj not in self.task.items:
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

    def valid_actions(self, state: HomeState) -> list[str]:
        return self.action_texts

    def transition(self, state: HomeState, action: int) -> Transition[HomeState]:
        verb, *args = self.actions[action]
        next_state = self._apply(state, verb, args) or state
        success = all(self.holds(next_state, p) for p in self.task.goal_predicates)
        return Transition(next_state, 1.0 if success else 0.0, terminated=success, success=success)

    def _apply(self, s: HomeState, verb: str, args: list[str]) -> HomeState | None:
        """The next state, or ``None`` where the action's preconditions fail."""
        target = args[0]
        if verb == "walk":
            if s.sitting_on is not None:
                return None
            if target in ROOMS:
                return s._replace(room=target, close_to=None)
            if target in self.items and (
                s.locations[self.items.index(target)] == "held" or self.hidden(s, target)
            ):
                return None
            return s._replace(room=self.room_of(s, target), close_to=target)
        if verb == "stand":
            return s._replace(sitting_on=None) if s.sitting_on == target else None
        near = s.close_to == target
        if verb == "grab":
            index = self.items.index(target)
            where = s.locations[index]
            support = where.split(":", 1)[1] if ":" in where else None
            reachable = near or (support is not None and s.close_to == support)
            if (
                not reachable
                or where == "held"
                or self.hidden(s, target)
                or s.locations.count("held") >= HANDS
            ):
                return None
            return s._replace(locations=_replaced(s.locations, index, "held"))
        if verb == "put":
            furniture = args[1]
            index = self.items.index(target)
            closed = FURNITURE[furniture].openable and furniture not in s.open
            if s.locations[index] != "held" or s.close_to != furniture or closed:
                return None
            return s._replace(
                locations=_replaced(s.locations, index, f"{_preposition(furniture)}:{furniture}")
            )
        if not near:
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
        sentences = ["There are four rooms: the kitchen, bathroom, bedroom, and living room."]
        sentences.append(f"You are in the {state.room}.")
        visible = [
            obj
            for obj in self.task.objects
            if self.room_of(state, obj) == state.room
            and not (
                obj in self.task.items
                and (state.locations[self.items.index(obj)] == "held" or self.hidden(state, obj))
            )
        ]
        if visible:
            sentences.append(f"You notice {_join_the(visible)}.")
        for item, where in zip(self.items, state.locations, strict=True):
            if ":" in where and item in visible:
                preposition, furniture = where.split(":", 1)
                verb = "are" if item in PLURAL_NOUNS else "is"
                sentences.append(f"The {_display(item)} {verb} {preposition} the {_display(furniture)}.")
        for f in self.task.furniture:
            if FURNITURE[f].room != state.room:
                continue
            if FURNITURE[f].openable:
                sentences.append(f"The {_display(f)} is {'open' if f in state.open else 'closed'}.")
            if FURNITURE[f].switchable:
                sentences.append(f"The {_display(f)} is {'on' if f in state.switched_on else 'off'}.")
        held = [item for item, where in zip(self.items, state.locations, strict=True) if where == "held"]
        if held:
            sentences.append(f"You are holding {_join_the(held)}.")
        if state.sitting_on is not None:
            sentences.append(f"You are sitting on the {_display(state.sitting_on)}.")
        elif state.close_to is not None:
            sentences.append(f"You are close to the {_display(state.close_to)}.")
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


def _display(name: str) -> str:
    return "TV" if name == "tv" else name


def _join_the(names: list[str]) -> str:
    return join_phrases([f"the {_display(n)}" for n in names])


def _replaced(values: tuple[str, ...], index: int, value: str) -> tuple[str, ...]:
    return (*values[:index], value, *values[index + 1 :])
