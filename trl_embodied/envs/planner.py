"""The scripted expert: optimal action sequences by uniform-cost search over a pure transition function.

Used by the tests (every task must be solvable in its known optimal number of steps), as the expert
for demonstrations, and to report each task's optimal return.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable
from typing import Any


def shortest_plan(
    start: Hashable,
    valid_actions: Callable[[Any], list[str]],
    transition: Callable[[Any, int], Any],
    *,
    max_cost: int,
) -> list[int]:
    """Action indices that lead from ``start`` to success at the least cost.

    The cost of a plan is ``(primitive steps, actions)``, compared in that order: for macro actions
    fewer primitive steps means a higher undiscounted return, and among equals the shorter plan wins.
    ``transition(state, i)`` returns a :class:`~trl_embodied.envs.core.Transition`.

    Raises:
        RuntimeError: no plan of at most ``max_cost`` primitive steps reaches success.
    """
    tie = itertools.count()  # keeps the heap from comparing states
    frontier: list[tuple[int, int, int, Hashable, list[int]]] = [(0, 0, next(tie), start, [])]
    best: dict[Hashable, tuple[int, int]] = {start: (0, 0)}
    while frontier:
        steps, length, _, state, plan = heapq.heappop(frontier)
        if state is _SUCCESS:
            return plan  # popped in cost order: nothing left in the frontier is cheaper
        if best[state] < (steps, length):
            continue  # a cheaper path to this state was expanded already
        for action in range(len(valid_actions(state))):
            outcome = transition(state, action)
            cost = (steps + outcome.primitive_steps, length + 1)
            if cost[0] > max_cost:
                continue
            if outcome.success:
                # Not returned yet: a cheaper success may still come from a state in the frontier.
                heapq.heappush(frontier, (*cost, next(tie), _SUCCESS, [*plan, action]))
                continue
            if outcome.terminated or outcome.state == state:
                continue
            if cost < best.get(outcome.state, (max_cost + 1, 0)):
                best[outcome.state] = cost
                heapq.heappush(frontier, (*cost, next(tie), outcome.state, [*plan, action]))
    raise RuntimeError(f"no plan reaches success within {max_cost} primitive steps from this state")


class _Success:
    """Marker state for a popped successful plan."""

    def __repr__(self) -> str:
        return "<success>"


_SUCCESS = _Success()
