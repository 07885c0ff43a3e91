"""compiler/value_bounds.py: every non-NaN value of an expression lies in its bounds."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fusegrad.compiler.loopir import (AccInit, Accumulator, AccRef, AccUpdate, Apply, Buffer,
                                      Const, DimValue, Gemm, Load, Loop, Program, Store)
from fusegrad.compiler.value_bounds import value_bounds

INF = math.inf
F64 = "float64"


def const(v):
    return Const(v, F64)


def op(name, *args):
    return Apply(name, tuple(args), F64)


def scratch(name):
    return Buffer(name, F64, (4,), "scratch")


X_IN = Buffer("x", F64, (4,), "input")


def program_of(*body, scratch_buffers=()):
    return Program("p", [], [X_IN], [], list(scratch_buffers), list(body))


def bounds(expr, *body):
    return value_bounds(expr, program_of(*body))


def x():
    return Load(X_IN, 0)


def test_constants_and_unknowns():
    assert bounds(const(2.5)) == (2.5, 2.5)
    assert bounds(const(math.nan)) == (-INF, INF)
    assert bounds(x()) == (-INF, INF)  # an input
    assert bounds(op("frobnicate", const(1.0))) == (-INF, INF)
    assert bounds(DimValue(7, F64)) == (7.0, 7.0)


def test_sign_rules_of_one_argument():
    assert bounds(op("exp", x())) == (0.0, INF)
    assert bounds(op("logistic", x())) == (0.0, 1.0)
    assert bounds(op("tanh", x())) == (-1.0, 1.0)
    assert bounds(op("sqrt", x())) == (0.0, INF)
    assert bounds(op("abs", x())) == (0.0, INF)
    assert bounds(op("neg", op("exp", x()))) == (-INF, 0.0)
    assert bounds(op("log1p", x())) == (-INF, INF)
    lo, hi = bounds(op("log", op("add", const(1.0), op("exp", x()))))
    assert lo >= 0 and hi == INF  # log(1 + eˣ) ≥ log 1


def test_sub_one_minus_a_logistic_is_in_the_unit_interval():
    lo, hi = bounds(op("sub", const(1.0), op("logistic", x())))
    assert lo == 0.0 and 1.0 <= hi < 1.0 + 1e-12


def test_products_of_intervals_and_quotients():
    s = op("logistic", x())
    lo, hi = bounds(op("mul", s, op("sub", const(1.0), s)))
    assert lo == 0.0 and 1.0 <= hi < 1.0 + 1e-12
    assert bounds(op("mul", op("neg", s), op("exp", x()))) == (-INF, 0.0)
    assert bounds(op("mul", x(), s)) == (-INF, INF)
    assert bounds(op("div", op("exp", x()), op("add", const(1.0), op("exp", x())))) == (0.0, INF)
    assert bounds(op("div", const(1.0), op("tanh", x()))) == (-INF, INF)  # tanh may be 0
    lo, hi = bounds(op("div", const(-2.0), op("add", const(1.0), op("abs", x()))))
    assert -2.0 - 1e-12 < lo <= -2.0 and hi == 0.0


def test_a_factor_that_occurs_twice_is_a_square():
    y = x()
    middle = op("mul", op("logistic", x()), op("logistic", op("neg", x())))
    weight = op("mul", op("mul", y, middle), Load(X_IN, 0))  # y · σ(u)σ(−u) · y
    assert bounds(weight)[0] == 0.0
    assert bounds(op("mul", x(), x())) == (0.0, INF)
    assert bounds(op("mul", op("neg", x()), x())) == (-INF, 0.0)  # −x · x
    assert bounds(op("mul", op("neg", x()), op("neg", x())))[0] == 0.0
    three = op("mul", x(), op("mul", x(), x()))  # x³: one x is left over
    assert bounds(three) == (-INF, INF)
    other = Load(X_IN, 1)  # another element: no square
    assert bounds(op("mul", x(), other)) == (-INF, INF)


def test_a_load_is_the_union_of_what_is_stored():
    t = scratch("t")
    body = [Loop("@i0", 4, [Store(t, 0, op("logistic", x()))]), Store(t, 1, const(-3.0))]
    assert bounds(Load(t, 2), *body) == (-3.0, 1.0)
    assert bounds(Load(scratch("never_stored"), 0), *body) == (-INF, INF)


def test_a_buffer_a_product_writes_is_unbounded():
    t, a = scratch("t"), scratch("a")
    body = [Store(t, 0, const(1.0)), Gemm(t, a, a, 2, 2, 2)]
    assert bounds(Load(t, 0), *body) == (-INF, INF)


def test_a_buffer_that_loads_itself_is_unbounded():
    t = scratch("t")
    body = [Store(t, 0, const(1.0)), Store(t, 0, op("add", Load(t, 0), const(1.0)))]
    assert bounds(Load(t, 0), *body) == (-INF, INF)
    u, v = scratch("u"), scratch("v")
    mutual = [Store(u, 0, op("exp", Load(v, 0))), Store(v, 0, op("neg", Load(u, 0)))]
    assert bounds(Load(u, 0), *mutual) == (0.0, INF)  # exp of anything


def test_accumulators():
    total = Accumulator("acc", "add", F64)
    body = [AccInit(total), AccUpdate(total, op("exp", x()))]
    assert bounds(AccRef(total), *body) == (0.0, INF)
    negative = [AccInit(total), AccUpdate(total, op("neg", op("abs", x())))]
    assert bounds(AccRef(total), *negative) == (-INF, 0.0)
    mixed = [AccInit(total), AccUpdate(total, op("exp", x())), AccUpdate(total, const(-1.0))]
    assert bounds(AccRef(total), *mixed) == (-INF, INF)
    largest = Accumulator("m", "max", F64)
    body = [AccInit(largest), AccUpdate(largest, op("logistic", x()))]
    assert bounds(AccRef(largest), *body) == (-INF, 1.0)  # −inf before any update
    smallest = Accumulator("m", "min", F64)
    body = [AccInit(smallest), AccUpdate(smallest, op("exp", x()))]
    assert bounds(AccRef(smallest), *body) == (0.0, INF)


def test_select_cast_and_extrema():
    s = op("logistic", x())
    chosen = Apply("select", (op("lt", x(), const(0.0)), s, const(-1.0)), F64)
    assert bounds(chosen) == (-1.0, 1.0)
    assert bounds(Apply("cast", (s,), "float32")) == (0.0, 1.0)
    assert bounds(op("maximum", x(), const(0.0))) == (0.0, INF)
    assert bounds(op("minimum", s, const(-2.0))) == (-2.0, -2.0)


# -- property: random expressions over bounded leaves -----------------------------------------
UNARY = {
    "neg": np.negative, "exp": np.exp, "tanh": np.tanh, "sqrt": np.sqrt, "abs": np.abs,
    "log": np.log, "log1p": np.log1p, "expm1": np.expm1, "sin": np.sin, "cos": np.cos,
    "logistic": lambda v: 1 / (1 + np.exp(-v)),
}
BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "maximum": np.maximum, "minimum": np.minimum,
}
LEAVES = 3
finite = st.floats(-50, 50, allow_nan=False)


LEAF_BUFFERS = [Buffer(f"leaf{k}", F64, (1,), "scratch") for k in range(LEAVES)]


def expressions():
    leaves = st.one_of(st.integers(0, LEAVES - 1).map(lambda k: ("leaf", k)),
                       finite.map(lambda v: ("const", v)))

    def extend(children):
        return st.one_of(
            st.tuples(st.sampled_from(sorted(UNARY)), children),
            st.tuples(st.sampled_from(sorted(BINARY)), children, children),
        )

    return st.recursive(leaves, extend, max_leaves=8)


def to_ir(tree):
    if tree[0] == "leaf":
        return Load(LEAF_BUFFERS[tree[1]], 0)
    if tree[0] == "const":
        return const(tree[1])
    return op(tree[0], *(to_ir(t) for t in tree[1:]))


def evaluate(tree, values):
    if tree[0] == "leaf":
        return values[tree[1]]
    if tree[0] == "const":
        return np.float64(tree[1])
    table = UNARY if len(tree) == 2 else BINARY
    return table[tree[0]](*(evaluate(t, values) for t in tree[1:]))


@settings(max_examples=400, deadline=None)
@given(tree=expressions(),
       intervals=st.lists(st.tuples(finite, finite).map(sorted), min_size=LEAVES,
                          max_size=LEAVES),
       fractions=st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]) | st.floats(0, 1),
                          min_size=LEAVES, max_size=LEAVES))
def test_every_value_of_a_random_expression_is_within_its_bounds(tree, intervals, fractions):
    # leaf k: a buffer whose two stores are its interval's ends, so its bounds are them
    body = [Store(LEAF_BUFFERS[k], 0, const(end))
            for k in range(LEAVES) for end in intervals[k]]
    program = Program("p", [], [], [], [], body)
    values = [np.float64(min(max(lo + f * (hi - lo), lo), hi))
              for (lo, hi), f in zip(intervals, fractions)]
    with np.errstate(all="ignore"):
        value = evaluate(tree, values)
    if np.isnan(value):
        return
    lo, hi = value_bounds(to_ir(tree), program)
    assert lo <= value <= hi, (tree, values, value, (lo, hi))
