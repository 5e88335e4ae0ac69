"""The probabilities as answered are one rule: the serving API's printed digits are the pyfunc's values."""

import numpy as np

from hit_platform.domain import probabilities
from hit_platform.serving import encoding


def test_the_pyfunc_and_the_serving_api_round_alike():
    rng = np.random.default_rng(0)
    P = np.concatenate([rng.random((200, 72)), rng.normal(0.5, 1.0, (20, 72))])  # some outside [0, 1]
    printed = encoding.prediction_bytes(P[:1], np.zeros((1, 1), dtype=np.intp), "r", "1").decode()
    values = probabilities.answered(P[:1])[0]
    assert all(f'"{c}":{v:.{probabilities.DECIMALS}f}' in printed for c, v in zip(("AE", "AR", "AT"), values))
