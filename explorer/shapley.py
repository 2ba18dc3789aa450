"""Exact Shapley values for a few players (modalities), from the value of every coalition.

With ``n`` players there are ``2**n`` coalitions: 4 forwards for image + text, 8 for three modalities.  The
value of a coalition is the model's output with only those modalities present (the others masked), so the
values add up exactly: ``Σ φ_i = v(all) − v(none)`` (efficiency), with no integration path and no gap.
"""

from __future__ import annotations

from itertools import combinations
from math import factorial
from typing import Callable, Hashable, Sequence

#: more players than this would need more than 2**MAX_PLAYERS model calls
MAX_PLAYERS = 6


def coalitions(players: Sequence[Hashable]) -> list[frozenset]:
    """Every subset of ``players`` (``2**n`` of them), smallest first."""
    return [frozenset(c) for k in range(len(players) + 1) for c in combinations(players, k)]


def exact_shapley(players: Sequence[Hashable], value: "Callable[[frozenset], float] | dict") -> dict:
    """Shapley value of each player: ``φ_i = Σ_{S ⊆ N∖{i}} |S|! (n−|S|−1)! / n! · (v(S ∪ {i}) − v(S))``.

    Args:
        players: the modalities, e.g. ``("image", "text")``.
        value: ``v(coalition) -> float`` (the output with only those players present), or a dict
            ``frozenset → float`` holding every coalition.
    Returns:
        ``{player: φ}``; the values sum to ``v(all) − v(none)``.
    """
    players = tuple(players)
    n = len(players)
    if n == 0 or n > MAX_PLAYERS:
        raise ValueError(f"Exact Shapley values take 1 to {MAX_PLAYERS} players, got {n}.")
    if len(set(players)) != n:
        raise ValueError(f"Players must be distinct, got {players}.")
    v = {c: float(value[c] if isinstance(value, dict) else value(c)) for c in coalitions(players)}
    out = {}
    for p in players:
        others = [q for q in players if q != p]
        phi = 0.0
        for k in range(n):
            w = factorial(k) * factorial(n - k - 1) / factorial(n)
            for s in combinations(others, k):
                s = frozenset(s)
                phi += w * (v[s | {p}] - v[s])
        out[p] = phi
    return out
