"""Seeded synthetic populations whose attribute shares match given ones.

Marginals are dealt with exact counts (largest remainder), so 10,000 people match every share
within half a person (a multinomial draw missed by over 1 point for 45% of seeds). A joint table
is raked (IPF) to the marginals and its counts then made exact.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from personahub.core.errors import PersonahubError
from personahub.personas.persona_template import TEXT_ORIGIN, template_text
from personahub.personas.population_files import Joint, Marginals
from personahub.personas.record import Persona

__all__ = ["SOURCE", "Population", "draw_population", "exact_counts", "marginal_errors",
           "person_id", "rake", "template_personas"]

SOURCE = "population"

IPF_ROUNDS = 500
IPF_TOLERANCE = 1e-10


@dataclass(frozen=True)
class Population:
    """Drawn people (one dict of attribute values each), their targets and an id for them."""

    population_id: str
    people: tuple[dict[str, str], ...]
    targets: dict[str, dict[str, float]]
    seed: int

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.targets)


def exact_counts(shares: Mapping[str, float], n: int) -> dict[str, int]:
    """Turn shares into integer counts summing to n (largest remainder; ties in order)."""
    quotas = {value: n * share for value, share in shares.items()}
    counts = {value: int(np.floor(q)) for value, q in quotas.items()}
    order = sorted(quotas, key=lambda v: -(quotas[v] - counts[v]))
    for value in order[: n - sum(counts.values())]:
        counts[value] += 1
    return counts


def rake(joint: Joint, marginals: Marginals) -> np.ndarray:
    """Rake the joint's shares (IPF) to the marginals of the attributes both give.

    Raises PersonahubError when a target value has no cell or the marginals are unreachable.
    """
    weights = np.asarray(joint.shares, dtype=float)
    shared = [k for k in joint.keys if k in marginals.shares]
    index = {k: joint.keys.index(k) for k in shared}
    masks: dict[str, list[tuple[np.ndarray, float]]] = {}
    for key in shared:
        column = np.array([cell[index[key]] for cell in joint.cells])
        masks[key] = []
        for value, target in marginals.shares[key].items():
            mask = column == value
            if target > 0 and not weights[mask].sum() > 0:
                raise PersonahubError(f"--marginals give {key}={value} a share of {target:.3g} "
                                      "but the joint has no weight on it")
            masks[key].append((mask, target))
        outside = ~np.logical_or.reduce([m for m, _ in masks[key]])
        weights[outside] = 0.0  # values the marginals leave out get no one
    for _ in range(IPF_ROUNDS):
        worst = 0.0
        for key in shared:
            for mask, target in masks[key]:
                current = weights[mask].sum()
                worst = max(worst, abs(current - target))
                if current > 0:
                    weights[mask] *= target / current
        if worst < IPF_TOLERANCE:
            return weights / weights.sum()
    raise PersonahubError(f"the joint cannot be raked to the marginals of {', '.join(shared)}: "
                          f"IPF did not converge in {IPF_ROUNDS} rounds (zero cells make them "
                          "unreachable)")


def _population_id(marginals: Marginals | None, joint: Joint | None, n: int, seed: int) -> str:
    """Return a stable id for the inputs, so the same draw gives the same people."""
    what = json.dumps({"marginals": marginals.shares if marginals else None,
                       "joint": [joint.keys, joint.cells, joint.shares] if joint else None,
                       "n": n, "seed": seed}, sort_keys=True)
    return "pop-" + hashlib.sha1(what.encode()).hexdigest()[:10]


def _deal(shares: Mapping[str, float], n: int, rng: np.random.Generator) -> list[str]:
    values = [v for v, c in exact_counts(shares, n).items() for _ in range(c)]
    order = rng.permutation(n)
    return [values[i] for i in order]


def _systematic(weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Return n cell indices by systematic sampling over the cells in a random order."""
    order = rng.permutation(len(weights))
    cumulative = np.cumsum(weights[order]) * n / weights.sum()
    points = rng.random() + np.arange(n)
    picks = order[np.minimum(np.searchsorted(cumulative, points, side="right"), len(order) - 1)]
    return picks[rng.permutation(n)]


def _fix_counts(cells: list[list[str]], column: int, targets: dict[str, int],
                weight_of: dict[tuple[str, ...], float], rng: np.random.Generator) -> None:
    """Bring one attribute's counts to its targets by changing that attribute only, in place."""
    counts = {value: 0 for value in targets}
    for cell in cells:
        counts[cell[column]] = counts.get(cell[column], 0) + 1
    surplus = {v: counts[v] - targets.get(v, 0) for v in counts if counts[v] > targets.get(v, 0)}
    for value, target in targets.items():
        missing = target - counts[value]
        if missing <= 0:
            continue
        candidates = [i for i, cell in enumerate(cells) if surplus.get(cell[column], 0) > 0]
        ratios = []
        for i in candidates:
            moved = list(cells[i])
            moved[column] = value
            ratios.append(weight_of.get(tuple(moved), 0.0) / max(weight_of.get(tuple(cells[i]), 0.0), 1e-300))
        tie_break = rng.random(len(candidates))
        for j in np.lexsort((tie_break, -np.asarray(ratios))):
            if missing == 0:
                break
            cell = cells[candidates[j]]
            if surplus.get(cell[column], 0) > 0:
                surplus[cell[column]] -= 1
                cell[column] = value
                missing -= 1


def _draw_joint(joint: Joint, weights: np.ndarray, n: int,
                rng: np.random.Generator) -> tuple[list[list[str]], dict[str, dict[str, float]]]:
    picks = _systematic(weights, n, rng)
    cells = [list(joint.cells[i]) for i in picks]
    weight_of = {cell: float(w) for cell, w in zip(joint.cells, weights, strict=True) if w > 0}
    targets: dict[str, dict[str, float]] = {}
    for column, key in enumerate(joint.keys):
        shares: dict[str, float] = {}
        for cell, w in zip(joint.cells, weights, strict=True):
            shares[cell[column]] = shares.get(cell[column], 0.0) + float(w)
        targets[key] = {v: s for v, s in shares.items() if s > 0}
        _fix_counts(cells, column, exact_counts(targets[key], n), weight_of, rng)
    return cells, targets


def draw_population(n: int, *, seed: int = 0, marginals: Marginals | None = None,
                    joint: Joint | None = None) -> Population:
    """Draw n people matching the marginals and/or joint, seeded."""
    if n < 1:
        raise PersonahubError(f"--n must be >= 1, got {n}")
    if marginals is None and joint is None:
        raise PersonahubError("give --marginals FILE, --joint FILE or both")
    rng = np.random.default_rng(seed)
    people: list[dict[str, str]] = [{} for _ in range(n)]
    targets: dict[str, dict[str, float]] = {}
    if joint is not None:
        weights = (rake(joint, marginals) if marginals is not None
                   else np.asarray(joint.shares, dtype=float))
        cells, targets = _draw_joint(joint, weights, n, rng)
        for person, cell in zip(people, cells, strict=True):
            person.update(zip(joint.keys, cell, strict=True))
    for key, shares in (marginals.shares.items() if marginals is not None else ()):
        if joint is not None and key in joint.keys:
            continue
        targets[key] = dict(shares)
        for person, value in zip(people, _deal(shares, n, rng), strict=True):
            person[key] = value
    return Population(_population_id(marginals, joint, n, seed), tuple(people), targets, seed)


def marginal_errors(people: Sequence[Mapping[str, str]],
                    targets: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Return the drawn share minus the target share, per attribute and value."""
    n = len(people)
    errors: dict[str, dict[str, float]] = {}
    for key, shares in targets.items():
        counts: dict[str, int] = {}
        for person in people:
            counts[person.get(key, "")] = counts.get(person.get(key, ""), 0) + 1
        values = list(shares) + [v for v in counts if v not in shares]
        errors[key] = {v: counts.get(v, 0) / n - shares.get(v, 0.0) for v in values}
    return errors


def person_id(population_id: str, index: int) -> str:
    """Return a drawn person's persona id: people alike in every attribute are still two people."""
    return "p" + hashlib.sha1(f"{population_id}:{index}".encode()).hexdigest()[:15]


def template_personas(population: Population) -> list[Persona]:
    """Return the population as personas with template text."""
    return [Persona(text=template_text(person), source=SOURCE,
                    source_ref=f"{population.population_id} person {i + 1}",
                    attributes={**person, "population": population.population_id,
                                "text_origin": TEXT_ORIGIN},
                    persona_id=person_id(population.population_id, i))
            for i, person in enumerate(population.people)]
