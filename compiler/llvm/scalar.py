"""Element-wise ops as LLVM IR: one row per op of the op table.

Every row has the same signature, `row(em, args, dtype) -> ir.Value`: `em` is the
`ScalarEmitter` (builder plus declarations), `args` the operand values (already
of matching types) and `dtype` the result dtype. Floats follow IEEE 754 with no
fast-math flags (sum accumulators alone allow `reassoc`), so NaN and ±inf propagate
like NumPy. Transcendentals (exp, log, log1p, expm1, tanh, logistic, sin, cos,
pow) are generated IR from `mathlib.py`, inlined, so loops that use them stay
vectorized; they are within 1 ulp in float64 and correctly rounded in float32.
"""

from __future__ import annotations

from llvmlite import ir

from ..loopir import ITEM_BYTES
from .mathlib import VECTOR_MATH

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()

#: The type of a scalar value of each dtype (a bool is an i1 in registers).
VALUE_TYPES = {"float64": ir.DoubleType(), "float32": ir.FloatType(), "bool": I1}
#: The type of an element in memory (a bool is one byte, 0 or 1).
STORAGE_TYPES = {"float64": ir.DoubleType(), "float32": ir.FloatType(), "bool": I8}
ELEMENT_SIZES = ITEM_BYTES


def value_type(dtype: str) -> ir.Type:
    return VALUE_TYPES[dtype]


def constant(dtype: str, value) -> ir.Constant:
    if dtype == "bool":
        return ir.Constant(I1, int(bool(value)))
    return ir.Constant(VALUE_TYPES[dtype], float(value))


class ScalarEmitter:
    """What a row needs: the builder and lazily declared C-library functions."""

    def __init__(self, builder: ir.IRBuilder):
        self.builder = builder
        self.module = builder.module

    def call_intrinsic(self, name: str, args) -> ir.Value:
        function = self.module.declare_intrinsic(name, [args[0].type])
        return self.builder.call(function, args)

    def float_const(self, like: ir.Value, value: float) -> ir.Constant:
        return ir.Constant(like.type, value)


# -- rows -------------------------------------------------------------------------------
def _vector_math(name):
    # Generated, always-inlined IR (mathlib.py): loops that use it stay vectorized.
    def row(em, args, dtype):
        return em.builder.call(VECTOR_MATH[(name, dtype)](em.module), args)

    return row


def _intrinsic(name):
    def row(em, args, dtype):
        return em.call_intrinsic(name, args)

    return row


def _sign(em, args, dtype):
    # NumPy: sign(x) = +1 for x > 0, −1 for x < 0, +0 for ±0, NaN for NaN;
    # x + 0 is exactly that for ±0 and NaN (−0 + +0 = +0)
    (x,) = args
    b = em.builder
    zero, one, minus_one = (em.float_const(x, v) for v in (0.0, 1.0, -1.0))
    negative = b.select(b.fcmp_ordered("<", x, zero), minus_one, b.fadd(x, zero))
    return b.select(b.fcmp_ordered(">", x, zero), one, negative)


def _extremum(ordered_op):
    # NumPy: maximum(a, b) = a if (a > b or a is NaN) else b, so a NaN in either wins
    def row(em, args, dtype):
        a, c = args
        b = em.builder
        a_wins = b.or_(b.fcmp_ordered(ordered_op, a, c), b.fcmp_unordered("uno", a, a))
        return b.select(a_wins, a, c)

    return row


def _compare(op, ordered=True):
    # Floats compare like C (`ne` is unordered: NaN != NaN); bools compare as 0 < 1.
    def row(em, args, dtype):
        a, c = args
        b = em.builder
        if isinstance(a.type, ir.IntType):
            return b.icmp_unsigned(op, a, c)
        if ordered:
            return b.fcmp_ordered(op, a, c)
        return b.fcmp_unordered(op, a, c)

    return row


def _binary(method):
    def row(em, args, dtype):
        return getattr(em.builder, method)(*args)

    return row


def _select(em, args, dtype):
    cond, a, c = args
    return em.builder.select(cond, a, c)


def _cast(em, args, dtype):
    (x,) = args
    b = em.builder
    target = VALUE_TYPES[dtype]
    if x.type == target:
        return x
    if target == I1:  # float → bool: x != 0, and NaN is true
        return b.fcmp_unordered("!=", x, ir.Constant(x.type, 0.0))
    if x.type == I1:
        return b.uitofp(x, target)
    if ELEMENT_SIZES[dtype] > _float_width(x.type):
        return b.fpext(x, target)
    return b.fptrunc(x, target)


def _logaddexp(em, args, dtype):
    # log(eᵃ + eᵇ) = max(a, b) + log1p(e^−|a−b|); where a = b (±inf included, where
    # a − b is NaN) it is a + log 2. Built from the table's own rows.
    a, c = args
    b = em.builder
    larger = SCALAR_TABLE["maximum"](em, args, dtype)
    gap = SCALAR_TABLE["abs"](em, [b.fsub(a, c)], dtype)
    tail = SCALAR_TABLE["log1p"](em, [SCALAR_TABLE["exp"](em, [b.fneg(gap)], dtype)], dtype)
    tied = b.fadd(a, em.float_const(a, 0.6931471805599453))
    return b.select(b.fcmp_ordered("==", a, c), tied, b.fadd(larger, tail))


def _float_width(ftype) -> int:
    return 8 if isinstance(ftype, ir.DoubleType) else 4


SCALAR_TABLE = {
    # unary floats
    "neg": lambda em, args, dtype: em.builder.fneg(args[0]),
    "abs": _intrinsic("llvm.fabs"),
    "sign": _sign,
    "exp": _vector_math("exp"),
    "log": _vector_math("log"),
    "log1p": _vector_math("log1p"),
    "expm1": _vector_math("expm1"),
    "sqrt": _intrinsic("llvm.sqrt"),
    "tanh": _vector_math("tanh"),
    "sin": _vector_math("sin"),
    "cos": _vector_math("cos"),
    "logistic": _vector_math("logistic"),
    # binary floats
    "add": _binary("fadd"),
    "sub": _binary("fsub"),
    "mul": _binary("fmul"),
    "div": _binary("fdiv"),
    "pow": _vector_math("pow"),
    "maximum": _extremum(">"),
    "logaddexp": _logaddexp,
    "minimum": _extremum("<"),
    # comparisons → i1
    "lt": _compare("<"),
    "le": _compare("<="),
    "gt": _compare(">"),
    "ge": _compare(">="),
    "eq": _compare("=="),
    "ne": _compare("!=", ordered=False),
    # masks
    "logical_and": _binary("and_"),
    "logical_or": _binary("or_"),
    "logical_not": lambda em, args, dtype: em.builder.not_(args[0]),
    "select": _select,
    "cast": _cast,
}

#: The op names the scalar table handles.
SCALAR_OPS = frozenset(SCALAR_TABLE)


# -- accumulators ------------------------------------------------------------------------
def _acc_extremum(intrinsic, bool_method):
    # llvm.maximum / llvm.minimum: NaN if either operand is NaN (as NumPy's max), and a
    # reduction the loop vectorizer knows, so max/min reductions run in SIMD lanes.
    def update(em, acc, value):
        if acc.type == I1:
            return getattr(em.builder, bool_method)(acc, value)
        suffix = "f64" if isinstance(acc.type, ir.DoubleType) else "f32"
        name = f"{intrinsic}.{suffix}"
        function = em.module.globals.get(name)
        if function is None:
            function = ir.Function(em.module, ir.FunctionType(acc.type, [acc.type] * 2), name)
        return em.builder.call(function, [acc, value])

    return update


#: acc op= value, per accumulator op.
ACC_UPDATE = {
    # reassoc (only): the vectorizer may split a sum into lanes. The order is fixed when
    # the kernel is compiled, so results stay deterministic; NaN and inf still propagate.
    "add": lambda em, acc, value: em.builder.fadd(acc, value, flags=("reassoc",)),
    "max": _acc_extremum("llvm.maximum", "or_"),
    "min": _acc_extremum("llvm.minimum", "and_"),
}

#: The identity of each accumulator op, per dtype (bool max/min are any/all).
ACC_IDENTITY = {
    ("add", "float64"): 0.0, ("add", "float32"): 0.0,
    ("max", "float64"): float("-inf"), ("max", "float32"): float("-inf"),
    ("min", "float64"): float("inf"), ("min", "float32"): float("inf"),
    ("max", "bool"): False, ("min", "bool"): True,
}
