"""Element-wise ops as CUDA C expressions: one row per op of the op table.

Every row has the signature `row(args, dtype) -> str`: `args` are the operands' C
expressions (already of matching types), `dtype` the result dtype. The semantics are
the LLVM renderer's (compiler/llvm/scalar.py): IEEE 754, NaN and ±inf propagate like
NumPy (maximum/minimum let a NaN operand win, `ne` is true for NaN), float → bool is
`x != 0` (so NaN is true). Transcendentals call CUDA's math library (`exp` in float64,
`expf` in float32; within 1–2 ulp, CUDA C Programming Guide, "Mathematical
Functions"); the helpers of `HELPERS` give `logistic`, `logaddexp`, `sign` and the
NaN-propagating maximum/minimum.
"""

from __future__ import annotations

import numpy as np

C_TYPES = {"float64": "double", "float32": "float", "bool": "unsigned char"}
#: The C type of a scalar value in registers (a bool is a C++ bool; one byte in memory).
VALUE_TYPES = {"float64": "double", "float32": "float", "bool": "bool"}

#: __device__ helpers, in float64 and float32 (C++ overloads, so rows need no suffix).
HELPERS = r"""
/* NumPy's maximum/minimum: a NaN in either operand wins. */
FG_INLINE double fg_maximum(double a, double b) { return (a > b || a != a) ? a : b; }
FG_INLINE float fg_maximum(float a, float b) { return (a > b || a != a) ? a : b; }
FG_INLINE double fg_minimum(double a, double b) { return (a < b || a != a) ? a : b; }
FG_INLINE float fg_minimum(float a, float b) { return (a < b || a != a) ? a : b; }
FG_INLINE bool fg_maximum(bool a, bool b) { return a || b; }
FG_INLINE bool fg_minimum(bool a, bool b) { return a && b; }

/* sign(x): +1, -1, and x + 0 for ±0 and NaN (+0 and NaN, as NumPy). */
FG_INLINE double fg_sign(double x) { return x > 0.0 ? 1.0 : (x < 0.0 ? -1.0 : x + 0.0); }
FG_INLINE float fg_sign(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x + 0.0f); }

/* σ(x) = 1/(1 + e^-x) for x >= 0, e^x/(1 + e^x) below: no exp overflows. */
FG_INLINE double fg_logistic(double x)
{
    if (x >= 0.0)
        return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}
FG_INLINE float fg_logistic(float x)
{
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* log(e^a + e^b) = max(a, b) + log1p(e^-|a - b|); a + log 2 where a = b (±inf too). */
FG_INLINE double fg_logaddexp(double a, double b)
{
    if (a == b)
        return a + 0.6931471805599453;
    return fg_maximum(a, b) + log1p(exp(-fabs(a - b)));
}
FG_INLINE float fg_logaddexp(float a, float b)
{
    if (a == b)
        return a + 0.6931471805599453f;
    return fg_maximum(a, b) + log1pf(expf(-fabsf(a - b)));
}
"""


def _math(name: str):
    """A libm-style function: `name` in float64, `name` + f in float32."""

    def row(args, dtype):
        return f"{name}{'f' if dtype == 'float32' else ''}({', '.join(args)})"

    return row


def _helper(name: str):
    def row(args, dtype):
        return f"{name}({', '.join(args)})"

    return row


def _infix(operator: str):
    def row(args, dtype):
        return f"({args[0]} {operator} {args[1]})"

    return row


def _cast(args, dtype):
    (x,) = args
    if dtype == "bool":
        return f"({x} != 0)"  # NaN is true, as the LLVM renderer's `fcmp une`
    return f"(({VALUE_TYPES[dtype]})({x}))"


CUDA_OPS = {
    # unary floats
    "neg": lambda args, dtype: f"(-{args[0]})",
    "abs": _math("fabs"),
    "sign": _helper("fg_sign"),
    "exp": _math("exp"),
    "log": _math("log"),
    "log1p": _math("log1p"),
    "expm1": _math("expm1"),
    "sqrt": _math("sqrt"),
    "tanh": _math("tanh"),
    "sin": _math("sin"),
    "cos": _math("cos"),
    "logistic": _helper("fg_logistic"),
    # binary floats
    "add": _infix("+"),
    "sub": _infix("-"),
    "mul": _infix("*"),
    "div": _infix("/"),
    "pow": _math("pow"),
    "maximum": _helper("fg_maximum"),
    "minimum": _helper("fg_minimum"),
    "logaddexp": _helper("fg_logaddexp"),
    # comparisons → bool (C's are ordered except `!=`, as the LLVM renderer's)
    "lt": _infix("<"),
    "le": _infix("<="),
    "gt": _infix(">"),
    "ge": _infix(">="),
    "eq": _infix("=="),
    "ne": _infix("!="),
    # masks
    "logical_and": _infix("&&"),
    "logical_or": _infix("||"),
    "logical_not": lambda args, dtype: f"(!{args[0]})",
    "select": lambda args, dtype: f"({args[0]} ? {args[1]} : {args[2]})",
    "cast": _cast,
}

#: acc op= value, per accumulator op: the C expression of the updated value.
ACC_UPDATE = {
    "add": lambda acc, value: f"{acc} + {value}",
    "max": lambda acc, value: f"fg_maximum({acc}, {value})",
    "min": lambda acc, value: f"fg_minimum({acc}, {value})",
}

#: The identity of each accumulator op (bool max/min are any/all).
_IDENTITY = {"add": 0.0, "max": float("-inf"), "min": float("inf")}


def identity(op: str, dtype: str) -> str:
    if dtype == "bool":
        return "false" if op == "max" else "true"
    return constant(_IDENTITY[op], dtype)


def constant(value, dtype: str) -> str:
    """A C literal of exactly `value` in `dtype` (float32: the float64 value rounded
    once, as the LLVM renderer's constants are)."""
    if dtype == "bool":
        return "true" if value else "false"
    value = float(value)
    f = "f" if dtype == "float32" else ""
    if value != value:
        return f"(0.0{f} / 0.0{f})"
    if value in (float("inf"), float("-inf")):
        return f"({'-' if value < 0 else ''}1.0{f} / 0.0{f})"
    if dtype == "float32" and float(np.float32(value)) != value:
        return f"((float){value!r})"  # the shortest decimal of this double, rounded once
    text = repr(value) + f  # the shortest decimal that reads back as exactly this value
    return f"({text})" if text.startswith("-") else text
