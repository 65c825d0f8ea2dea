"""Deterministic seeds for every (study seed, group, replicate).

Seeds come from numpy's ``SeedSequence``, whose hashing of its entropy is specified and stable
across numpy versions, platforms and processes (unlike Python's salted ``hash``). The same study
therefore gives every replicate the same seed on every run, on every machine, and a resumed or
retried group recomputes exactly the values it would have had.
"""

from __future__ import annotations

import numpy as np

_INT63 = (1 << 63) - 1


def replicate_seed(*, study_seed: int, group_index: int, replicate: int) -> int:
    """The seed handed to ``simulate(params, seed)`` for one replicate.

    Args:
        study_seed: the study file's ``seed`` (>= 0).
        group_index: the parameter set's position in the study (its ``group_id``).
        replicate: 0-based replicate number within the group.

    Returns:
        A non-negative integer below 2**63 (fits int64 and ``numpy.random.default_rng``).
    """
    if study_seed < 0 or group_index < 0 or replicate < 0:
        raise ValueError("seed components must be >= 0")
    state = np.random.SeedSequence([study_seed, group_index, replicate]).generate_state(
        1, dtype=np.uint64
    )
    return int(state[0]) & _INT63
