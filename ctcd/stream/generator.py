"""river's Agrawal generator, reproduced row for row (bit-exact) with numpy.

`draw_agrawal(seed, n, perturbation)` gives the first `n` rows of river's `synth.Agrawal(seed=seed,
perturbation=perturbation)`: the Mersenne Twister state of Python's `random.Random(seed)` is copied into
numpy's `MT19937`, its 32-bit words are drawn in one call, and the variable number of words each row consumes
(rejection sampling in `randint`, the conditional commission draw) is resolved with array look-ups instead of
a Python loop per value. `classify` labels rows with any of Agrawal's 10 classification functions exactly as
river does. Nothing here knows the config or the scenario (`ctcd.stream.scenario` builds on it).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ctcd.errors import ConfigError

AGRAWAL_NUMERIC = ("salary", "commission", "age", "hvalue", "hyears", "loan")
AGRAWAL_CATEGORICAL = ("elevel", "car", "zipcode")
# river's order of the attributes in each row (and in the words drawn for it).
RIVER_ORDER = ("salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan")

_PAD = 32  # look-up slots past the drawn words, more than one row can step over
_U53 = 1.0 / 9007199254740992.0  # 2**-53, as in CPython's random()


def _mt_words(seed: int, n: int) -> np.ndarray:
    """The first `n` 32-bit outputs of `random.Random(seed)`, drawn by numpy's MT19937."""
    key = random.Random(seed).getstate()[1]
    bitgen = np.random.MT19937()
    bitgen.state = {
        "bit_generator": "MT19937",
        "state": {"key": np.asarray(key[:624], dtype=np.uint32), "pos": key[624]},
    }
    return bitgen.random_raw(n).astype(np.uint32)


def _next_accepted(words: np.ndarray, n: int) -> np.ndarray:
    """For each position, the first position at or after it where `randint` over n values accepts a word.

    CPython's `randrange(n)` takes the top `n.bit_length()` bits of a word and retries while they are >= n.
    Positions past the words (the _PAD extra slots too) map to len(words): "ran out".
    """
    size = len(words)
    accepted = (words >> (32 - int(n).bit_length())) < n
    idx = np.where(accepted, np.arange(size, dtype=np.int32), np.int32(size))
    return np.concatenate([np.minimum.accumulate(idx[::-1])[::-1], np.full(_PAD, size, dtype=np.int32)])


@dataclass(frozen=True)
class AgrawalDraw:
    """Rows of the Agrawal generator by attribute name: `clean` values label the rows, `observed` are
    what an applicant reports (equal to `clean` unless `perturbation` > 0, as in river)."""

    clean: dict[str, np.ndarray]
    observed: dict[str, np.ndarray]


def _layout(words: np.ndarray, n_rows: int, perturbed: bool) -> dict[str, np.ndarray] | None:
    """Word positions of each attribute of the first `n_rows` rows, or None when the words run out."""
    n = len(words)
    u = np.full(n + _PAD, np.nan)
    u[: n - 1] = ((words[:-1] >> 5) * 67108864.0 + (words[1:] >> 6)) * _U53
    # A position that runs out of words becomes n; later look-ups stay inside the _PAD slots and end > n.
    start = np.arange(n, dtype=np.int32)
    has_commission = (20000 + 130000 * u[:n]) < 75000
    age = _next_accepted(words, 61)[start + 2 + 2 * has_commission.astype(np.int32)]
    elevel = _next_accepted(words, 5)[age + 1]
    car = _next_accepted(words, 20)[elevel + 1]
    zipcode = _next_accepted(words, 9)[car + 1]
    hyears = _next_accepted(words, 30)[zipcode + 3]  # hvalue takes the 2 words after zipcode
    end = hyears + 3  # loan takes the 2 words after hyears
    if perturbed:  # salary, [commission], age, hvalue, hyears, loan: 2 words each
        end = end + 10 + 2 * has_commission.astype(np.int32)

    # Each row starts where the previous one ended: a chain of n_rows scalar look-ups.
    ends = memoryview(end)
    chain = []
    pos = 0
    for _ in range(n_rows):
        if pos >= n:
            return None
        chain.append(pos)
        pos = ends[pos]
    if pos > n:
        return None
    starts = np.array(chain, dtype=np.int64)
    return {
        "start": starts,
        "has_commission": has_commission[starts],
        "age": age[starts],
        "elevel": elevel[starts],
        "car": car[starts],
        "zipcode": zipcode[starts],
        "hyears": hyears[starts],
        "u": u,
    }


def _perturb(
    val: np.ndarray,
    r: np.ndarray,
    lo: float | np.ndarray,
    hi: float,
    amount: float,
    span: float | None = None,
) -> np.ndarray:
    """river's `_perturb_value`, including its clamping order (lower bound tested first)."""
    span = hi - lo if span is None else span
    val = val + (span * (2 * (r - 0.5))) * amount
    return np.where(val < lo, lo, np.where(val > hi, hi, val))


def draw_agrawal(seed: int, n: int, perturbation: float = 0.0) -> AgrawalDraw:
    """The first `n` rows of river's `synth.Agrawal(seed=seed, perturbation=perturbation)`, as arrays."""
    perturbed = perturbation > 0.0
    n_words = int(n * (16.5 + 11.5 * perturbed)) + 256
    while True:
        words = _mt_words(seed, n_words)
        lay = _layout(words, n, perturbed)
        if lay is not None:
            break
        n_words *= 2
    u = lay["u"]
    s, z, hy, flag = lay["start"], lay["zipcode"], lay["hyears"], lay["has_commission"]

    def top_bits(pos: np.ndarray, k: int) -> np.ndarray:  # CPython's getrandbits(k) on one word
        return (words[pos] >> (32 - k)).astype(np.int64)

    zipcode = top_bits(z, 4)
    clean = {
        "salary": 20000 + 130000 * u[s],
        "commission": np.where(flag, 10000 + 75000 * u[s + 2], 0.0),
        "age": 20 + top_bits(lay["age"], 6),
        "elevel": top_bits(lay["elevel"], 3),
        "car": 1 + top_bits(lay["car"], 5),
        "zipcode": zipcode,
        "hvalue": ((8 - zipcode) * 100000).astype(np.float64) * (0.5 + u[z + 1]),
        "hyears": 1 + top_bits(hy, 5),
        "loan": u[hy + 1] * 500000,
    }
    if not perturbed:
        return AgrawalDraw(clean=clean, observed=dict(clean))
    p = hy + 3
    a = p + 2 + 2 * flag
    observed = {
        **clean,
        "salary": _perturb(clean["salary"], u[p], 20000, 150000, perturbation),
        "commission": np.where(
            flag, _perturb(clean["commission"], u[p + 2], 10000, 75000, perturbation), 0.0
        ),
        "age": np.round(_perturb(clean["age"], u[a], 20, 80, perturbation)).astype(np.int64),
        "hvalue": _perturb(clean["hvalue"], u[a + 2], (9 - zipcode) * 100000.0, 0, perturbation, 135000),
        "hyears": np.round(_perturb(clean["hyears"], u[a + 4], 1, 30, perturbation)).astype(np.int64),
        "loan": _perturb(clean["loan"], u[a + 6], 0, 500000, perturbation),
    }
    return AgrawalDraw(clean=clean, observed=observed)


def _between(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (lo <= x) & (x <= hi)


def _by_age(age: np.ndarray, young: np.ndarray, middle: np.ndarray, old: np.ndarray) -> np.ndarray:
    return np.where(age < 40, young, np.where(age < 60, middle, old))


def classify(rows: Mapping[str, np.ndarray], function: int) -> np.ndarray:
    """Agrawal's classification `function` (0-9) on arrays by attribute name, exactly as river computes it.

    river's quirks are kept on purpose (function 4 compares salary with loan-sized bounds), so labels
    agree with river row for row.
    """
    sal, com, age, el = rows["salary"], rows["commission"], rows["age"], rows["elevel"]
    loan, hval, hyrs = rows["loan"], rows["hvalue"], rows["hyears"]
    el_young, el_middle, el_old = np.isin(el, (0, 1)), np.isin(el, (1, 2, 3)), np.isin(el, (2, 3, 4))
    if function == 0:
        y = (age < 40) | (age >= 60)
    elif function == 1:
        y = _by_age(
            age, _between(sal, 50000, 100000), _between(sal, 75000, 125000), _between(sal, 25000, 75000)
        )
    elif function == 2:
        y = _by_age(age, el_young, el_middle, el_old)
    elif function == 3:
        y = _by_age(
            age,
            np.where(el_young, _between(sal, 25000, 75000), _between(sal, 50000, 100000)),
            np.where(el_middle, _between(sal, 50000, 100000), _between(sal, 75000, 125000)),
            np.where(el_old, _between(sal, 50000, 100000), _between(sal, 25000, 75000)),
        )
    elif function == 4:
        y = _by_age(
            age,
            np.where(
                _between(sal, 50000, 100000), _between(loan, 100000, 300000), _between(sal, 200000, 400000)
            ),
            np.where(
                _between(sal, 75000, 125000),
                (sal >= 200000) & (loan <= 400000),
                _between(sal, 300000, 500000),
            ),
            np.where(
                _between(sal, 25000, 75000), _between(loan, 300000, 500000), _between(loan, 75000, 300000)
            ),
        )
    elif function == 5:
        total = sal + com
        y = _by_age(
            age, _between(total, 50000, 100000), _between(total, 75000, 125000), _between(total, 25000, 75000)
        )
    elif function in (6, 7, 8, 9):
        if function == 6:
            disposable = 2 * (sal + com) / 3 - loan / 5 - 20000
        elif function == 7:
            disposable = 2 * (sal + com) / 3 - 5000 * el - 20000
        elif function == 8:
            disposable = 2 * (sal + com) / 3 - 5000 * el - loan / 5 - 10000
        else:
            equity = np.where(hyrs >= 20, hval * (hyrs - 20) / 10, 0.0)
            disposable = 2 * (sal + com) / 3 - 5000 * el + equity / 5 - 10000
        y = ~(disposable > 1)
    else:
        raise ConfigError(f"Agrawal classification function {function} does not exist: use 0 to 9")
    return np.asarray(y, dtype=np.int64)


def agrawal_frame(seed: int, n: int, function: int = 0, perturbation: float = 0.0) -> pd.DataFrame:
    """river's `synth.Agrawal(function, seed, perturbation=perturbation).take(n)` as a DataFrame with `y`."""
    draw = draw_agrawal(seed, n, perturbation)
    frame = pd.DataFrame({name: draw.observed[name] for name in RIVER_ORDER})
    frame["y"] = classify(draw.clean, function)
    return frame
