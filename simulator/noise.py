"""Cheap Gaussian noise for the hot path: slices of a pre-drawn table at random offsets."""

from __future__ import annotations

import functools
import random

TABLE_SIZE = 16384
MAX_BLOCK = 256


class GaussianTable:
    """Standard normal values drawn once; `block(rng, n)` returns n of them from an offset chosen by `rng`.

    Generating ~200 noise values per sample with `random.gauss` dominated the generation cost; a slice of a
    large table keeps each value N(0, 1) and neighbouring values independent, at a fraction of the cost.
    One table is shared by all devices of a run; each device's own rng picks the offsets.
    """

    def __init__(self, source: random.Random, size: int = TABLE_SIZE) -> None:
        values = [source.gauss(0.0, 1.0) for _ in range(size)]
        self._values = values + values[:MAX_BLOCK]
        self._size = size

    def block(self, rng: random.Random, count: int) -> list[float]:
        """`count` (<= 256) standard normal values."""
        if count > MAX_BLOCK:
            raise ValueError(f"block of {count} > {MAX_BLOCK}")
        start = int(rng.random() * self._size)
        return self._values[start : start + count]


@functools.cache
def shared_table(seed: int | None) -> GaussianTable:
    """The table for a run: a function of the seed (or of fresh entropy when there is none)."""
    return GaussianTable(random.Random(f"noise:{seed}") if seed is not None else random.Random())
