"""The mixed-precision search on callables: rank the nodes by what each one costs in reduced precision, then keep
the fewest of them in float32 that bring the cell within its budget. No model, no runtime here: the caller says how
far a build is from the reference and whether it passes."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Kept = tuple[str, ...]


@dataclass(frozen=True)
class Attempt:
    """One build tried: how many nodes (the ranking's first `kept`) stayed in float32, or which route (`label`), and
    the judge's word."""

    kept: int
    passed: bool
    detail: str
    seconds: float
    label: str = ""


@dataclass(frozen=True)
class SearchResult:
    ranking: tuple[tuple[str, float], ...]  # each node and its cost alone in reduced precision (NaN: not measured)
    kept: Kept | None  # the fewest nodes found that pass (None: none found)
    attempts: tuple[Attempt, ...]
    note: str = ""  # why the search stopped early, or why no set passes

    @property
    def fewest_proven(self) -> bool:
        """Whether one node fewer than `kept` (in the ranking's order) was tried and failed."""
        return self.kept is not None and any(not a.passed and a.kept == len(self.kept) - 1 for a in self.attempts)


def rank_nodes(nodes: Sequence[str], cost: Callable[[str], float], deadline: float,
               clock: Callable[[], float] = time.monotonic) -> tuple[list[tuple[str, float]], int]:
    """Each node's cost: how far from the reference the output moves when that node alone runs in reduced
    precision. Returns the nodes ranked costliest first, and how many were measured before `deadline` (the ones
    not reached rank after them, in graph order)."""
    measured: dict[str, float] = {}
    for node in nodes:
        if clock() > deadline:
            break
        measured[node] = cost(node)
    ranked = sorted(measured.items(), key=lambda item: -item[1])
    return ranked + [(node, float("nan")) for node in nodes if node not in measured], len(measured)


def fewest_kept(ranked: Sequence[str], passes: Callable[[Kept], tuple[bool, str]], deadline: float,
                clock: Callable[[], float] = time.monotonic) -> tuple[Kept | None, list[Attempt], str]:
    """The shortest prefix of `ranked` that, kept in float32, passes: every node first (if even that fails, nothing
    kept in float32 repairs the cell), then bisection between the longest prefix known to fail (none kept: the
    failing cell) and the shortest known to pass. Assumes keeping more of the ranking never hurts, which the
    bisection does not re-check. Stops at `deadline` with the shortest passing prefix found so far."""
    attempts: list[Attempt] = []

    def attempt(count: int) -> bool:
        started = clock()
        passed, detail = passes(tuple(ranked[:count]))
        attempts.append(Attempt(count, passed, detail, clock() - started))
        return passed

    if not ranked:
        return None, attempts, "no node can be kept in float32"
    if not attempt(len(ranked)):
        return None, attempts, (f"even with all {len(ranked)} nodes in float32 the cell fails: the difference is "
                                "not the reduced precision's")
    failing, passing = 0, len(ranked)
    while passing - failing > 1:
        if clock() > deadline:
            return tuple(ranked[:passing]), attempts, (f"stopped at the time limit: {passing} nodes pass, "
                                                       f"{failing} fail; the fewest lies between")
        middle = (failing + passing) // 2
        if attempt(middle):
            passing = middle
        else:
            failing = middle
    return tuple(ranked[:passing]), attempts, ""


def search(nodes: Sequence[str], cost: Callable[[str], float], passes: Callable[[Kept], tuple[bool, str]],
           seconds: float, clock: Callable[[], float] = time.monotonic) -> SearchResult:
    """The artifact as it is first (none kept: it must fail, or there is nothing to search), then rank `nodes` (at
    most half of `seconds`) and find the fewest of the ranking to keep in float32."""
    start = clock()
    passed, detail = passes(())
    as_is = Attempt(0, passed, detail, clock() - start)
    if passed:
        return SearchResult((), None, (as_is,), "the search's judge passes the artifact as it is, every node in reduced "
                                                "precision: the gate failed it on something the search does not see")
    ranking, measured = rank_nodes(nodes, cost, start + seconds / 2, clock)
    kept, attempts, note = fewest_kept([node for node, _ in ranking], passes, start + seconds, clock)
    attempts.insert(0, as_is)
    if measured < len(nodes):
        note = "; ".join(filter(None, [f"ranked {measured} of {len(nodes)} nodes in the time allowed", note]))
    return SearchResult(tuple(ranking), kept, tuple(attempts), note)
