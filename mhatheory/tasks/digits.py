"""Real data nobody here made: the UCI handwritten digits as shipped inside scikit-learn
(``sklearn.datasets.load_digits``: 1,797 images of 8 × 8 pixels with values 0–16).

Each image becomes T = 8 tokens (its rows) of d = 8 features (the pixels of the row, divided by
16 so that they lie in [0, 1]). Two tasks:

* ``pair=(a, b)``: the images of digits a and b only, labels +1 for a and −1 for b (the logistic
  loss of the binary models);
* ``pair=None``: all 10 classes, integer labels 0–9 (cross-entropy).

The split into training and test images is random but fixed by ``seed`` and stratified by class
(each class contributes ``test_fraction`` of its images to the test set), so every model of a
sweep sees the same test images.
"""

from __future__ import annotations

import numpy as np


def _load_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # an optional extra
        raise ImportError(
            "the digits data need scikit-learn, which ships them; install it with "
            "`pip install 'mhatheory[digits]'` (or `pip install scikit-learn`).") from e
    return load_digits()


def load(pair: tuple[int, int] | None = (3, 8), *, test_fraction: float = 0.5,
         seed: int = 0) -> dict:
    """The digits as ``{"x_train" [n, 8, 8], "y_train" [n], "x_test", "y_test"}`` (float64
    tokens; labels ±1 for a pair, 0–9 otherwise); module docstring."""
    if pair is not None:
        if (not isinstance(pair, (tuple, list)) or len(pair) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 9
                       for v in pair) or pair[0] == pair[1]):
            raise ValueError(f"pair must be two different digits in 0..9 such as (3, 8), or "
                             f"None for all 10 classes; got {pair!r}.")
    if not (isinstance(test_fraction, float) and 0 < test_fraction < 1):
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}.")
    raw = _load_digits()
    x = np.asarray(raw.images, dtype=np.float64) / 16.0                   # [1797, 8, 8]
    label = np.asarray(raw.target, dtype=np.int64)
    if pair is not None:
        keep = np.isin(label, pair)
        x, label = x[keep], label[keep]
    rng = np.random.default_rng(seed)
    test = np.zeros(len(label), dtype=bool)
    for c in np.unique(label):
        idx = np.flatnonzero(label == c)
        test[rng.choice(idx, int(round(test_fraction * idx.size)), replace=False)] = True
    y = np.where(label == pair[0], 1.0, -1.0) if pair is not None else label
    return {"x_train": x[~test], "y_train": y[~test], "x_test": x[test], "y_test": y[test]}
