"""A prediction's probabilities as the platform answers them.

72 per song in `COUNTRIES` order, each clipped to [0, 1] and rounded to
`DECIMALS` decimals (a resolution of 1e-9). The serving API prints them so,
the inference log stores them so, and the registered model's MLflow pyfunc
answers them so: the same song gets the same digits wherever it is asked.
"""

from __future__ import annotations

import numpy as np

DECIMALS = 9
_SCALE = 10 ** DECIMALS


def answered(P: np.ndarray) -> np.ndarray:
    """The probabilities of P as answered (clipped to [0, 1], rounded to DECIMALS decimals)."""
    return np.rint(np.clip(P, 0.0, 1.0) * _SCALE) / _SCALE
