"""Strategies, NumPy formulas and comparisons shared by the op tests
(test_ops_reference.py, test_ops_dispatch.py)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fusegrad as fg
from reference import reference

DTYPES = (np.float32, np.float64)
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
MAX_SIDE = 5


# -- strategies ----------------------------------------------------------------------
def floats(dtype, lo, hi):
    """Finite floats in [lo, hi] that the dtype represents exactly."""
    lo, hi = float(np.asarray(lo, dtype)), float(np.asarray(hi, dtype))
    width = np.dtype(dtype).itemsize * 8
    return st.floats(lo, hi, width=width, allow_nan=False, allow_infinity=False)


def interval(lo, hi):
    return lambda dtype: floats(dtype, lo, hi)


def away_from_zero(lo, hi):
    return lambda dtype: floats(dtype, lo, hi) | floats(dtype, -hi, -lo)


def small_integers(n=3):
    """Few distinct values, so that ties and equalities occur."""
    return lambda dtype: st.integers(-n, n).map(float)


def special_values(dtype):
    return st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0, -1.0, 0.5, 3.0])


REALS = interval(-100, 100)
MODERATE = interval(-20, 20)
POSITIVE = interval(1e-3, 1e3)
NONNEGATIVE = interval(0, 1e3)
NONZERO = away_from_zero(1e-2, 1e2)
BASES = interval(0.1, 10)
EXPONENTS = interval(-3, 3)
TIES = small_integers()

dtypes = st.sampled_from(DTYPES)


def shapes(min_dims=0, max_dims=3, min_side=0):
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=MAX_SIDE
    )


def arrays(draw, dtype, shape, domain=REALS):
    return draw(hnp.arrays(dtype, shape, elements=domain(dtype)))


# -- comparison ------------------------------------------------------------------------
def numpy_value(fn, *args):
    """fn on NumPy arrays, quietly (NaN, inf and empty means are expected here)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(fn(*args))


def traced_value(fn, *args):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(reference(fn, *args))


def magnitude(*arrays) -> float:
    """A scale for absolute tolerances: 1 + the largest finite |value| involved."""
    largest = 0.0
    for a in arrays:
        a = np.asarray(a, dtype=np.float64)
        finite = np.abs(a[np.isfinite(a)])
        if finite.size:
            largest = max(largest, float(finite.max()))
    return 1.0 + largest


def assert_matches(actual, expected, scale=1.0):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype}, NumPy gives {expected.dtype}"
    assert actual.shape == expected.shape, f"shape {actual.shape}, NumPy gives {expected.shape}"
    if expected.dtype.kind == "b":
        np.testing.assert_array_equal(actual, expected)
        return
    rtol = RTOL[expected.dtype]
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, equal_nan=True)


def check_against_numpy(traced, numpy_form, *args, scale=None):
    expected = numpy_value(numpy_form, *args)
    actual = traced_value(traced, *args)
    assert_matches(actual, expected, magnitude(*args) if scale is None else scale)


def check_same_outcome(traced, numpy_form, *args):
    """Where NumPy raises (bad axis, bad reshape), fusegrad raises its own error."""
    try:
        expected = numpy_value(numpy_form, *args)
    except (ValueError, IndexError, TypeError):
        with pytest.raises(fg.FusegradError):
            reference(traced, *args)
        return
    assert_matches(traced_value(traced, *args), expected, magnitude(*args))


# -- NumPy formulas of the fusegrad-only helpers -----------------------------------------
def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_softplus(x):
    return np.logaddexp(x, 0)


def np_relu(x):
    return np.maximum(x, 0)


def np_logsumexp(x, axis=None, keepdims=False):
    # m + log Σ e^(x−m); an empty set has max −inf and logsumexp −inf.
    peak = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    shift = np.where(np.isfinite(peak), peak, 0)
    result = np.log(np.sum(np.exp(x - shift), axis=axis, keepdims=True)) + shift
    return result if keepdims else np.sum(result, axis=axis)  # drops the size-1 axes


def np_log_softmax(x, axis=-1):
    return x - np_logsumexp(x, axis=axis, keepdims=True)


def np_softmax(x, axis=-1):
    return np.exp(np_log_softmax(x, axis=axis))
