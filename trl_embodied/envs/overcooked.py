"""A macro-action Overcooked kitchen with one agent: TWOSOME's Tomato Salad and Tomato-Lettuce Salad.

A 7x7 grid (the paper's map A): counters around the walls hold the ingredients, the bowl, the cutting
boards and the delivery square; the agent walks on the 5x5 floor inside. Each macro action walks the
shortest path (breadth-first search over floor cells; counters block) to a floor cell next to its
target, then interacts: one primitive step, or three to chop.

Macro actions, one fixed slot each; a slot's text follows the state and says what it does now:

=============================  ===================================================================
``pick up the <item>``         empty hands: take it. Holding the bowl, it reads ``put the <item> in
                               the bowl``: put the (chopped) ingredient into it. Holding a chopped
                               ingredient, the bowl's slot reads ``put the <item> in the bowl``:
                               put it into the bowl and carry the bowl.
``go to the cutting board``    holding an ingredient, it reads ``put the <item> on the cutting
                               board`` (while the board is empty); holding the bowl, ``put the bowl
                               on the cutting board``: collect the chopped ingredient lying there.
``chop the <item>``            chop the unchopped ingredient on the nearest board (3 steps);
                               ``chop nothing`` when no board holds one.
``serve <what you hold>``      deliver at the delivery square; ``serve nothing`` when empty-handed.
=============================  ===================================================================

Rewards (TWOSOME): -0.001 per primitive step, +0.2 the first time each ingredient of the recipe is
chopped, +1 for the correct dish (the episode ends with ``success``), -0.1 for a wrong delivery (the
dish is refused and stays in hand, so the episode stays solvable). Episodes are truncated after 200
primitive steps. An action that cannot apply (hands full, board taken, ...) still walks and spends its
interaction step. With ``observation_radius`` set (the paper uses 2), the agent only knows items it has
seen within that Chebyshev distance; ``pick up`` of an unseen item walks to the nearest floor cell that
reveals unseen counters instead.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from trl_embodied.envs.core import InvalidActionMode, TextEnv, Transition, join_phrases

Cell = tuple[int, int]
#: Where an item is: ("table", row, col), ("board", index), ("held",) or ("bowl",).
Place = tuple

STEP_PENALTY = -0.001
CHOP_REWARD = 0.2
DELIVERY_REWARD = 1.0
WRONG_DELIVERY_PENALTY = -0.1
CHOP_STEPS = 3
ORDINALS = ("first", "second", "third")


@dataclass(frozen=True)
class OvercookedTask:
    """A kitchen task as data.

    ``layout`` rows use ``X`` counter, ``.`` floor, ``A`` the agent's start (floor), ``D`` delivery,
    digits the cutting boards in order, and the first letter of each item (ingredients and ``bowl``)
    for the counter it starts on.
    """

    name: str
    layout: tuple[str, ...]
    ingredients: tuple[str, ...]
    recipe: frozenset[str]

    @property
    def items(self) -> tuple[str, ...]:
        return (*self.ingredients, "bowl")

    def dish(self) -> str:
        return " and ".join(i for i in self.ingredients if i in self.recipe)


TASKS: dict[str, OvercookedTask] = {
    task.name: task
    for task in (
        OvercookedTask(
            name="TomatoSalad",
            layout=(
                "XXXtXXX",
                "X.....X",
                "b.....X",
                "X..A..1",
                "X.....X",
                "X.....D",
                "XXXXXXX",
            ),
            ingredients=("tomato",),
            recipe=frozenset({"tomato"}),
        ),
        OvercookedTask(
            name="TomatoLettuceSalad",
            layout=(
                "XXXtlXX",
                "X.....X",
                "b.....1",
                "X..A..X",
                "o.....2",
                "X.....D",
                "XXXXXXX",
            ),
            ingredients=("tomato", "lettuce", "onion"),  # the onion is the distractor
            recipe=frozenset({"tomato", "lettuce"}),
        ),
    )
}


class KitchenState(NamedTuple):
    agent: Cell
    places: tuple[Place, ...]  # per item, in ``task.items`` order
    chopped: tuple[bool, ...]  # per ingredient
    seen: frozenset[Cell] | None  # cells the agent has seen; None when fully observable


class Kitchen:
    """The static part of a task: grid, navigation distances, and where each macro action leads."""

    def __init__(self, task: OvercookedTask):
        self.task = task
        rows = task.layout
        if len(rows) != 7 or any(len(r) != 7 for r in rows):
            raise ValueError(f"task {task.name!r}: the layout must be 7 rows of 7 cells.")
        self.size = 7
        self.floor = [(r, c) for r in range(7) for c in range(7) if rows[r][c] in ".A"]
        self.counters = [(r, c) for r in range(7) for c in range(7) if rows[r][c] not in ".A"]
        boards = sorted((rows[r][c], (r, c)) for r, c in self.counters if rows[r][c].isdigit())
        self.boards: list[Cell] = [cell for _, cell in boards]
        (self.delivery,) = [(r, c) for r, c in self.counters if rows[r][c] == "D"]
        (self.start,) = [(r, c) for r, c in self.floor if rows[r][c] == "A"]
        letters = {item[0]: i for i, item in enumerate(task.items)}
        if len(letters) != len(task.items):
            raise ValueError(f"task {task.name!r}: items must start with different letters.")
        self.item_cells: list[Cell] = [(-1, -1)] * len(task.items)
        for r, c in self.counters:
            if rows[r][c] in letters:
                self.item_cells[letters[rows[r][c]]] = (r, c)
        # Counters an item may be placed on when placement is randomized.
        reserved = {*self.boards, self.delivery}
        self.free_counters = [
            cell for cell in self.counters if cell not in reserved and self.neighbours(cell)
        ]
        self.distance = self._all_pairs_distances()

    def neighbours(self, cell: Cell) -> list[Cell]:
        """Floor cells next to ``cell`` (4-connected), in a fixed order."""
        r, c = cell
        floor = set(self.floor)
        return [n for n in ((r - 1, c), (r, c + 1), (r + 1, c), (r, c - 1)) if n in floor]

    def _all_pairs_distances(self) -> dict[tuple[Cell, Cell], int]:
        distance = {}
        for source in self.floor:
            queue, seen = deque([(source, 0)]), {source}
            while queue:
                cell, d = queue.popleft()
                distance[source, cell] = d
                for n in self.neighbours(cell):
                    if n not in seen:
                        seen.add(n)
                        queue.append((n, d + 1))
        return distance

    @cached_property
    def _approach_table(self) -> dict[tuple[Cell, Cell], tuple[Cell, int]]:
        table = {}
        for agent in self.floor:
            for counter in self.counters:
                options = self.neighbours(counter)
                if options:
                    best = min(options, key=lambda n: self.distance[agent, n])
                    table[agent, counter] = (best, self.distance[agent, best])
        return table

    def approach(self, agent: Cell, counter: Cell) -> tuple[Cell, int]:
        """The floor cell next to ``counter`` nearest to ``agent``, and the steps to walk there."""
        return self._approach_table[agent, counter]

    def visible(self, agent: Cell, radius: int) -> frozenset[Cell]:
        r, c = agent
        return frozenset(
            (rr, cc)
            for rr in range(max(0, r - radius), min(self.size, r + radius + 1))
            for cc in range(max(0, c - radius), min(self.size, c + radius + 1))
        )


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


class OvercookedEnv(TextEnv[KitchenState]):
    """TWOSOME's macro-action Overcooked (see the module docstring for actions and rewards).

    Args:
        task: ``"TomatoSalad"`` (5 actions) or ``"TomatoLettuceSalad"`` (8 actions, onion distractor).
        observation_radius: ``None`` for full observability, else the Chebyshev radius of view (paper: 2).
        randomize_items: place the items on random free counters at each reset (from the env's seed);
            by default the layout is fixed.
        max_primitive_steps: truncation limit (paper: 200).
        invalid_action, invalid_action_penalty, render_mode: see :class:`TextEnv`.
    """

    def __init__(
        self,
        task: str = "TomatoSalad",
        *,
        observation_radius: int | None = None,
        randomize_items: bool = False,
        max_primitive_steps: int = 200,
        invalid_action: InvalidActionMode = "raise",
        invalid_action_penalty: float = WRONG_DELIVERY_PENALTY,
        render_mode: str | None = None,
    ):
        if task not in TASKS:
            raise ValueError(f"unknown Overcooked task {task!r}; choose one of {sorted(TASKS)}.")
        if observation_radius is not None and observation_radius < 1:
            # Radius 0 would see only the agent's own floor cell, never a counter.
            raise ValueError(f"observation_radius={observation_radius}; use None (full view) or an int >= 1.")
        self.task = TASKS[task]
        self.kitchen = Kitchen(self.task)
        self.observation_radius = observation_radius
        self.randomize_items = randomize_items
        items = self.task.items
        self.actions: list[tuple] = [("pick", i) for i in range(len(items))]
        self.actions += [("board", b) for b in range(len(self.kitchen.boards))]
        self.actions += [("serve",), ("chop",)]
        super().__init__(
            max_actions=len(self.actions),
            symbolic_size=2 + 6 * len(items),
            max_primitive_steps=max_primitive_steps,
            invalid_action=invalid_action,
            invalid_action_penalty=invalid_action_penalty,
            render_mode=render_mode,
        )

    # -- state queries -------------------------------------------------------------------------------
    @property
    def bowl(self) -> int:
        return len(self.task.items) - 1

    def held(self, state: KitchenState) -> int | None:
        return next((i for i, place in enumerate(state.places) if place[0] == "held"), None)

    def in_bowl(self, state: KitchenState) -> list[int]:
        return [i for i, place in enumerate(state.places) if place[0] == "bowl"]

    def on_board(self, state: KitchenState, board: int) -> int | None:
        return next((i for i, place in enumerate(state.places) if place == ("board", board)), None)

    def cell_of(self, state: KitchenState, item: int) -> Cell:
        """The grid cell where ``item`` is (the agent's when held; the bowl's when in it)."""
        place = state.places[item]
        if place[0] == "table":
            return place[1], place[2]
        if place[0] == "board":
            return self.kitchen.boards[place[1]]
        if place[0] == "held":
            return state.agent
        return self.cell_of(state, self.bowl)

    def known(self, state: KitchenState, item: int) -> bool:
        place = state.places[item]
        if state.seen is None or place[0] != "table":
            return True
        return (place[1], place[2]) in state.seen

    def chop_target(self, state: KitchenState) -> int | None:
        """The nearest board holding an unchopped ingredient."""
        boards = [
            b
            for b in range(len(self.kitchen.boards))
            if (item := self.on_board(state, b)) is not None and not state.chopped[item]
        ]
        if not boards:
            return None
        return min(boards, key=lambda b: self.kitchen.approach(state.agent, self.kitchen.boards[b])[1])

    # -- the task ------------------------------------------------------------------------------------
    def initial_state(self) -> KitchenState:
        cells = self.kitchen.item_cells
        if self.randomize_items:
            order = self.np_random.permutation(len(self.kitchen.free_counters))[: len(cells)]
            cells = [self.kitchen.free_counters[i] for i in order]
        places = tuple(("table", r, c) for r, c in cells)
        seen = None
        if self.observation_radius is not None:
            seen = self.kitchen.visible(self.kitchen.start, self.observation_radius)
        return KitchenState(self.kitchen.start, places, (False,) * len(self.task.ingredients), seen)

    def valid_actions(self, state: KitchenState) -> list[str]:
        held = self.held(state)  # every slot's text depends on it: look it up once
        return [self._action_text(state, action, held) for action in self.actions]

    def _action_text(self, state: KitchenState, action: tuple, held: int | None) -> str:
        """The slot's text in this state (``held``: the item in hand): what the macro action will do now
        (TWOSOME's action prompts)."""
        kind = action[0]
        if kind == "pick":
            item = action[1]
            if held == self.bowl and item != self.bowl:
                return f"put the {self.task.items[item]} in the bowl"
            if item == self.bowl and held not in (None, self.bowl) and state.chopped[held]:
                return f"put the {self.task.items[held]} in the bowl"
            return f"pick up the {self.task.items[item]}"
        if kind == "board":
            board = (
                "cutting board" if len(self.kitchen.boards) == 1 else f"{ORDINALS[action[1]]} cutting board"
            )
            if held == self.bowl:
                return f"put the bowl on the {board}"
            if held is not None and self.on_board(state, action[1]) is None:
                return f"put the {self._phrase(state, held)} on the {board}"
            return f"go to the {board}"
        if kind == "serve":
            return "serve nothing" if held is None else f"serve the {self._phrase(state, held)}"
        target = self.chop_target(state)
        if target is None:
            return "chop nothing"
        return f"chop the {self.task.items[self.on_board(state, target)]}"

    def _phrase(self, state: KitchenState, item: int) -> str:
        """A noun phrase for ``item`` without article: "chopped tomato", "bowl of chopped tomato"."""
        if item != self.bowl:
            name = self.task.items[item]
            return f"chopped {name}" if state.chopped[item] else name
        contents = [self.task.items[i] for i in self.in_bowl(state)]
        return f"bowl of chopped {join_phrases(contents)}" if contents else "empty bowl"

    def transition(self, state: KitchenState, action: int) -> Transition[KitchenState]:
        kind, *args = self.actions[action]
        places = list(state.places)
        held = self.held(state)
        bonus, terminated = 0.0, False
        if kind == "pick":
            (item,) = args
            if not self.known(state, item):
                return self._explore(state)
            if places[item][0] == "held" or (places[item][0] == "bowl" and held == self.bowl):
                return self._finish(state, state.agent, 1, places)  # already in hand
            agent, walk = self.kitchen.approach(state.agent, self.cell_of(state, item))
            if held is None and places[item][0] != "bowl":
                places[item] = ("held",)
            elif (
                held == self.bowl and item != self.bowl and state.chopped[item] and places[item][0] != "bowl"
            ):
                places[item] = ("bowl",)
            elif item == self.bowl and held is not None and state.chopped[held]:
                places[held], places[item] = ("bowl",), ("held",)
            return self._finish(state, agent, walk + 1, places)
        if kind == "board":
            (board,) = args
            agent, walk = self.kitchen.approach(state.agent, self.kitchen.boards[board])
            lying = self.on_board(state, board)
            if held is not None and held != self.bowl and lying is None:
                places[held] = ("board", board)
            elif held == self.bowl and lying is not None and state.chopped[lying]:
                places[lying] = ("bowl",)
            return self._finish(state, agent, walk + 1, places)
        if kind == "chop":
            board = self.chop_target(state)
            if board is None:
                return self._finish(state, state.agent, 1, places)
            agent, walk = self.kitchen.approach(state.agent, self.kitchen.boards[board])
            item = self.on_board(state, board)
            chopped = list(state.chopped)
            chopped[item] = True
            if self.task.items[item] in self.task.recipe:
                bonus = CHOP_REWARD  # an ingredient is chopped once, so this pays once
            return self._finish(state, agent, walk + CHOP_STEPS, places, bonus=bonus, chopped=tuple(chopped))
        # serve
        agent, walk = self.kitchen.approach(state.agent, self.kitchen.delivery)
        if held is not None:
            served = {self.task.items[i] for i in self.in_bowl(state)}
            terminated = held == self.bowl and served == self.task.recipe
            bonus = DELIVERY_REWARD if terminated else WRONG_DELIVERY_PENALTY
        return self._finish(state, agent, walk + 1, places, bonus=bonus, terminated=terminated)

    def _finish(
        self,
        state: KitchenState,
        agent: Cell,
        steps: int,
        places: list[Place],
        *,
        bonus: float = 0.0,
        terminated: bool = False,
        chopped: tuple[bool, ...] | None = None,
    ) -> Transition[KitchenState]:
        seen = state.seen
        if seen is not None:
            seen = seen | self.kitchen.visible(agent, self.observation_radius)
        next_state = KitchenState(agent, tuple(places), state.chopped if chopped is None else chopped, seen)
        reward = STEP_PENALTY * steps + bonus
        return Transition(next_state, reward, terminated, success=terminated, primitive_steps=steps)

    def _explore(self, state: KitchenState) -> Transition[KitchenState]:
        """Walk to the nearest floor cell from which an unseen counter comes into view."""
        unseen = [cell for cell in self.kitchen.counters if cell not in state.seen]
        candidates = [
            cell
            for cell in self.kitchen.floor
            if any(c in self.kitchen.visible(cell, self.observation_radius) for c in unseen)
        ]
        target = min(candidates, key=lambda cell: self.kitchen.distance[state.agent, cell])
        steps = max(1, self.kitchen.distance[state.agent, target])
        return self._finish(state, target, steps, list(state.places))

    def describe(self, state: KitchenState) -> str:
        boards = self.kitchen.boards
        if len(boards) == 1:
            sentences = ["There is a fixed cutting board in the room."]
        else:
            sentences = [f"There are {('two', 'three')[len(boards) - 2]} fixed cutting boards in the room."]
        on_table = [
            _article(self._phrase(state, i))
            for i, place in enumerate(state.places)
            if place[0] == "table" and self.known(state, i)
        ]
        if on_table:
            sentences.append(f"You notice {join_phrases(on_table)} on the table.")
        for b in range(len(boards)):
            item = self.on_board(state, b)
            if item is not None:
                where = "the cutting board" if len(boards) == 1 else f"the {ORDINALS[b]} cutting board"
                sentences.append(f"{_article(self._phrase(state, item)).capitalize()} is on {where}.")
        held = self.held(state)
        if held is None:
            sentences.append("Currently you don't have anything in hand.")
        else:
            sentences.append(f"Currently you are carrying {_article(self._phrase(state, held))}.")
        sentences.append(
            f"To serve the dish of a bowl only containing chopped {self.task.dish()}, you should first"
        )
        return " ".join(sentences)

    def symbolic(self, state: KitchenState) -> np.ndarray:
        scale = self.kitchen.size - 1
        features = [state.agent[0] / scale, state.agent[1] / scale]
        for item, place in enumerate(state.places):
            if not self.known(state, item):
                features += [-1.0, -1.0, 0.0, 0.0, 0.0, 0.0]
                continue
            r, c = self.cell_of(state, item)
            chopped = item != self.bowl and state.chopped[item]
            features += [r / scale, c / scale, place[0] == "held", chopped, place[0] == "bowl", 1.0]
        return np.asarray(features, dtype=np.float32)

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.state is None:
            return None
        grid = [list(row.replace("A", ".")) for row in self.task.layout]
        for r, c in self.kitchen.item_cells:
            grid[r][c] = "X"
        for item, place in enumerate(self.state.places):
            if place[0] == "table":
                grid[place[1]][place[2]] = self.task.items[item][0]
        grid[self.state.agent[0]][self.state.agent[1]] = "@"
        return "\n".join("".join(row) for row in grid) + "\n" + self.describe(self.state)
