"""Value bounds: an interval [lo, hi] holding every non-NaN value a loop-IR expression
can take, given the program that computes it.

    bounds(x)  ⊇  { v : v = x at some point of some run, v not NaN }

A `Load` of a buffer is the union of the bounds of the values stored into it (an input,
a buffer a `Gemm` writes, or one nothing stores into, is unbounded); an `AccRef` of an
`add` accumulator is a sum of any number of updates, so only its sign can be known; a
`max` / `min` accumulator starts at −inf / +inf. A buffer whose stored values load it
again (a cycle) is unbounded. Ops are rows of `RULES`; an op without a row is unbounded.

Endpoints are floats. +, −, ·, / of float64 endpoints round like the values do
(to nearest, which is monotone); any other computed endpoint (not 0, not ±inf, not a
range's end like σ ≤ 1) is moved outwards by a few units of the expression's dtype, so
that float32 rounding and the libm's last-bit errors stay inside. Signs, which rounding
keeps, are exact. The product rule knows squares: in x · y · x the pair x · x is ≥ 0
whatever x is.
"""

from __future__ import annotations

import math

import numpy as np

from . import symbolic
from .loop_walk import walk
from .loopir import (AccRef, AccUpdate, Apply, Const, DimValue, Gemm, Load, Program, Store,
                     format_expr)

INF = math.inf
UNBOUNDED = (-INF, INF)
NONNEGATIVE = (0.0, INF)
NONPOSITIVE = (-INF, 0.0)
#: Relative outward step of a computed endpoint, per dtype (a few units in the last place).
WIDEN = {"float64": 8 * 2.0**-52, "float32": 8 * 2.0**-23}
LARGEST = {"float64": 1.7976931348623157e308, "float32": 3.4028234663852886e38}


def value_bounds(expr, program: Program) -> tuple[float, float]:
    """[lo, hi] holding every non-NaN value of `expr` (an expression of `program`)."""
    return _Bounds(program).of(expr)


# -- interval arithmetic (0 · inf counts as 0: the NaN it makes is not a value) ----------------
def union(*intervals):
    return min(i[0] for i in intervals), max(i[1] for i in intervals)


def _mul(x: float, y: float) -> float:
    return 0.0 if x == 0 or y == 0 else x * y


def interval_mul(a, b):
    products = [_mul(x, y) for x in a for y in b]
    return min(products), max(products)


def interval_div(a, b):
    lo, hi = b
    if lo <= 0 <= hi:  # x / ±0 is ±inf of either sign (or NaN)
        return (0.0, 0.0) if a == (0.0, 0.0) else UNBOUNDED
    quotients = []
    for x in a:
        for y in b:
            quotients.append(0.0 if x == 0 or math.isinf(y) and not math.isinf(x)
                             else _quotient(x, y))
    return min(quotients), max(quotients)


def _quotient(x: float, y: float) -> float:
    if math.isinf(x) and math.isinf(y):  # inf / inf: any magnitude, of the quotient's sign
        return INF if (x > 0) == (y > 0) else -INF
    return x / y


def interval_add(a, b):
    return _sum(a[0], b[0], -INF), _sum(a[1], b[1], INF)


def _sum(x: float, y: float, when_undefined: float) -> float:
    total = x + y
    return when_undefined if math.isnan(total) else total


def neg(a):
    return -a[1], -a[0]


def square(a):
    lo, hi = a
    if lo >= 0:
        return _mul(lo, lo), _mul(hi, hi)
    if hi <= 0:
        return _mul(hi, hi), _mul(lo, lo)
    return 0.0, max(_mul(lo, lo), _mul(hi, hi))


def monotone(fn, floor=-INF, ceiling=INF):
    """The rule of a nondecreasing function, clipped to its range [floor, ceiling]."""
    def rule(a):
        return max(floor, _apply(fn, a[0], floor)), min(ceiling, _apply(fn, a[1], ceiling))
    return rule


def _apply(fn, x: float, limit: float) -> float:
    try:
        return fn(x)
    except (OverflowError, ValueError):
        return limit


def _abs(a):
    lo, hi = a
    if lo >= 0:
        return a
    if hi <= 0:
        return -hi, -lo
    return 0.0, max(-lo, hi)


def _sqrt(a):
    return math.sqrt(max(a[0], 0.0)), math.sqrt(max(a[1], 0.0))


def _logistic(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def _log(x: float) -> float:
    return -INF if x == 0 else math.log(x)


def _log1p(x: float) -> float:
    return -INF if x == -1 else math.log1p(x)


def _domain(rule, lowest: float):
    """A rule of a function defined from `lowest` on (below it: NaN, not a value)."""
    def clipped(a):
        if a[1] < lowest:
            return UNBOUNDED  # NaN only; nothing better to say cheaply
        return rule((max(a[0], lowest), a[1]))
    return clipped


#: op → rule from the arguments' intervals to the result's interval (before widening).
RULES = {
    "neg": neg,
    "add": interval_add,
    "sub": lambda a, b: interval_add(a, neg(b)),
    "mul": interval_mul,
    "div": interval_div,
    "square": square,
    "exp": monotone(math.exp, floor=0.0),
    "expm1": monotone(math.expm1, floor=-1.0),
    "logistic": monotone(_logistic, floor=0.0, ceiling=1.0),
    "sigmoid": monotone(_logistic, floor=0.0, ceiling=1.0),
    "tanh": monotone(math.tanh, floor=-1.0, ceiling=1.0),
    "sqrt": _domain(_sqrt, 0.0),
    "abs": _abs,
    "log": _domain(monotone(_log), 0.0),
    "log1p": _domain(monotone(_log1p), -1.0),
    "sin": lambda a: (-1.0, 1.0),
    "cos": lambda a: (-1.0, 1.0),
    "sign": lambda a: (-1.0 if a[0] < 0 else 0.0, 1.0 if a[1] > 0 else 0.0),
    "maximum": lambda a, b: (max(a[0], b[0]), max(a[1], b[1])),
    "minimum": lambda a, b: (min(a[0], b[0]), min(a[1], b[1])),
    "logaddexp": lambda a, b: (max(a[0], b[0]), _sum(max(a[1], b[1]), math.log(2), INF)),
    "select": lambda cond, a, b: union(a, b),
    "where": lambda cond, a, b: union(a, b),
}
#: Ranges the functions never leave, rounding included (σ = 1 / (1 + e⁻ˣ) ≤ 1).
RANGES = {"exp": (0.0, INF), "expm1": (-1.0, INF), "logistic": (0.0, 1.0),
          "sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "sqrt": (0.0, INF), "abs": (0.0, INF)}
#: Comparisons and logic make a bool, 0 or 1.
for _op in ("lt", "le", "gt", "ge", "eq", "ne", "logical_and", "logical_or", "logical_not"):
    RULES[_op] = lambda *args: (0.0, 1.0)
#: Ops whose rule gives exact endpoints (no rounding to widen for).
EXACT = frozenset({"neg", "abs", "maximum", "minimum", "select", "where", "sign", "lt", "le",
                   "gt", "ge", "eq", "ne", "logical_and", "logical_or", "logical_not"})

#: Ops whose float64 endpoints round as the op itself does (both round to nearest, which is
#: monotone), so they need no widening in float64; in float32 the value rounds once more.
ROUNDED = frozenset({"add", "sub", "mul", "div"})


def widen(interval, dtype: str):
    """The interval moved outwards by a few units of `dtype` (0 and ±inf stay)."""
    step = WIDEN.get(dtype)
    if step is None:
        return interval
    largest = LARGEST[dtype]
    lo, hi = interval
    if lo != 0 and not math.isinf(lo):
        lo = lo - abs(lo) * step
        lo = -INF if lo < -largest else lo
    if hi != 0 and not math.isinf(hi):
        hi = hi + abs(hi) * step
        hi = INF if hi > largest else hi
    return lo, hi


def _factors(expr, negations=0):
    """(the factors of a product, through nested mul and neg; how many negations)."""
    if isinstance(expr, Apply) and expr.op == "mul":
        factors = []
        for arg in expr.args:
            inner, negations = _factors(arg, negations)
            factors += inner
        return factors, negations
    if isinstance(expr, Apply) and expr.op == "neg":
        return _factors(expr.args[0], negations + 1)
    return [expr], negations


class _Bounds:
    """Bounds within one program, memoized (by expression identity, and per buffer)."""

    def __init__(self, program: Program):
        self.program = program
        self.stmts = list(walk(program.body))
        self.memo: dict = {}
        self.visiting: set = set()

    def of(self, expr) -> tuple[float, float]:
        key = id(expr)
        if key not in self.memo:
            self.memo[key] = (expr, self._compute(expr))  # keep expr alive: ids stay unique
        return self.memo[key][1]

    def _compute(self, expr):
        if isinstance(expr, Const):
            value = float(expr.value)
            return UNBOUNDED if math.isnan(value) else (value, value)
        if isinstance(expr, DimValue):
            return _dim_bounds(expr.dim)
        if isinstance(expr, Load):
            return self._guarded(expr.buffer, self._buffer)
        if isinstance(expr, AccRef):
            return self._guarded(expr.acc, self._accumulator)
        if isinstance(expr, Apply):
            return self._apply(expr)
        return UNBOUNDED

    def _guarded(self, thing, compute):
        """compute(thing), unbounded when thing's value depends on itself."""
        key = ("thing", id(thing))
        if key in self.memo:
            return self.memo[key][1]
        if thing in self.visiting:
            return UNBOUNDED
        self.visiting.add(thing)
        try:
            result = compute(thing)
        finally:
            self.visiting.discard(thing)
        self.memo[key] = (thing, result)
        return result

    def _apply(self, expr: Apply):
        if expr.op == "cast":
            (arg,) = expr.args
            if expr.dtype == "bool":
                return 0.0, 1.0
            lo, hi = self.of(arg)
            if expr.dtype == "float32":  # rounding to nearest is monotone
                with np.errstate(over="ignore"):
                    return float(np.float32(lo)), float(np.float32(hi))
            return lo, hi
        if expr.op == "mul":
            return self._product(expr)
        rule = RULES.get(expr.op)
        if rule is None:
            return UNBOUNDED
        try:
            result = rule(*(self.of(a) for a in expr.args))
        except (TypeError, ValueError, OverflowError, ZeroDivisionError):
            return UNBOUNDED
        if math.isnan(result[0]) or math.isnan(result[1]):
            return UNBOUNDED
        if expr.op in EXACT or expr.op in ROUNDED and expr.dtype == "float64":
            return result
        lo, hi = widen(result, expr.dtype)
        floor, ceiling = RANGES.get(expr.op, UNBOUNDED)
        return max(lo, floor), min(hi, ceiling)

    def _product(self, expr: Apply):
        """The product's interval, with the sign of its flattened factors: a factor that
        occurs twice (the same text) is a square, x · x ≥ 0 whatever x is. (Only the sign:
        the magnitude is the tree's, whose every product rounds and may overflow.)"""
        tree = interval_mul(*(self.of(a) for a in expr.args))
        if expr.dtype != "float64":
            tree = widen(tree, expr.dtype)
        factors, negations = _factors(expr)
        by_text: dict = {}
        for factor in factors:
            by_text.setdefault(format_expr(factor), []).append(factor)
        sign = (-1.0, -1.0) if negations % 2 else (1.0, 1.0)
        for same in by_text.values():
            bounds = self.of(same[0])
            for _ in range(len(same) // 2):
                sign = interval_mul(sign, square(bounds))
            if len(same) % 2:
                sign = interval_mul(sign, bounds)
        lo, hi = tree
        if sign[0] >= 0:
            lo = max(lo, 0.0)
        if sign[1] <= 0:
            hi = min(hi, 0.0)
        return (lo, hi) if lo <= hi else (0.0, 0.0)

    def _buffer(self, buffer):
        if buffer.kind == "input":
            return UNBOUNDED
        if any(isinstance(s, Gemm) and s.c is buffer for s in self.stmts):
            return UNBOUNDED
        stores = [s for s in self.stmts if isinstance(s, Store) and s.buffer is buffer]
        if not stores:
            return UNBOUNDED  # never written here: whatever the memory held
        return union(*(self.of(s.value) for s in stores))

    def _accumulator(self, acc):
        updates = [self.of(s.value) for s in self.stmts
                   if isinstance(s, AccUpdate) and s.acc is acc]
        if acc.op == "add":  # 0 plus any number of updates
            if all(lo >= 0 for lo, _ in updates):
                return NONNEGATIVE
            if all(hi <= 0 for _, hi in updates):
                return NONPOSITIVE
            return UNBOUNDED
        if acc.op == "max":  # starts at −inf
            return (-INF, max([hi for _, hi in updates], default=-INF))
        if acc.op == "min":  # starts at +inf
            return (min([lo for lo, _ in updates], default=INF), INF)
        return UNBOUNDED


def _dim_bounds(dim):
    """A dim as a float: its value when constant, ≥ 0 when provably so."""
    value = symbolic.simplify(dim)
    if isinstance(value, int):
        return float(value), float(value)
    if symbolic.known_nonnegative(value):
        return NONNEGATIVE
    return UNBOUNDED
