"""Seeded uniform draws for many agents at once, the same in any shard and any process.

Each agent has one 64-bit key (a hash of the run seed and its persona id). A draw for a purpose
at a step scrambles the key with a salt made from that purpose and step, so an agent's draw
depends on nothing but (seed, persona, purpose, step): not on its shard, the shard count or the
order agents are visited.
"""

from __future__ import annotations

import hashlib

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_UNIT = 1.0 / (1 << 53)


def derived_seed(parts: tuple[object, ...]) -> int:
    """Return a 64-bit seed hashed from parts (their repr), the same in every process."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest(),
                          "big")


def mix64(x: np.ndarray) -> np.ndarray:
    """Scramble uint64 values with SplitMix64's finaliser (a bijection)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def step_draws(keys: np.ndarray, step: int) -> np.ndarray:
    """Return one uniform draw in [0, 1) per key for a step (the activation draw)."""
    salt = mix64(np.array([step], dtype=np.uint64) * _GOLDEN)
    return (mix64(keys ^ salt) >> np.uint64(11)).astype(np.float64) * _UNIT


def activation_keys(seed: int, persona_ids: list[str]) -> np.ndarray:
    """Return each persona's key, as a run's activation has always drawn it."""
    return np.fromiter((derived_seed((seed, pid, "active")) for pid in persona_ids),
                       dtype=np.uint64, count=len(persona_ids))


def salted_bits(keys: np.ndarray, *purpose: object) -> np.ndarray:
    """Return 64 scrambled bits per key for a purpose (a tuple such as ("kind", step))."""
    salt = np.uint64(derived_seed(("draw", *purpose)))
    return mix64(mix64(keys ^ salt) + _GOLDEN)


def uniforms(keys: np.ndarray, *purpose: object) -> np.ndarray:
    """Return one uniform draw in [0, 1) per key for a purpose."""
    return (salted_bits(keys, *purpose) >> np.uint64(11)).astype(np.float64) * _UNIT


def pick(cumulative: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Return, per draw, the index its value falls in under a cumulative distribution.

    Args:
        cumulative: rows of increasing cumulative weights ending at 1 (one row per draw, or a
            single row for all).
        draws: uniforms in [0, 1).
    """
    if cumulative.ndim == 1:
        return np.minimum(np.searchsorted(cumulative, draws, side="right"),
                          cumulative.size - 1)
    below = (cumulative <= draws[:, None]).sum(axis=1)
    return np.minimum(below, cumulative.shape[1] - 1)
