"""Element-wise ops and leaves: shape rules, NumPy reference, derivative rules.

Primitive element-wise nodes take operands of one shape and one dtype;
`compiler.build` inserts the broadcasts and casts. Each VJP rule reads like the
math: for y = f(x), x̄ = ȳ · f'(x) (reverse mode) and ẏ = f'(x) · ẋ (forward mode).
"""

from __future__ import annotations

import numpy as np

from .. import build as B
from .. import shapes
from ..errors import DTypeError
from ..ir import FLOAT_DTYPES
from .tables import EVALUATE, JVP, NOT_DIFFERENTIABLE, SHAPE, VJP, tangent_sum

UNARY = ("neg", "abs", "sign", "exp", "log", "log1p", "expm1", "sqrt", "tanh", "sin", "cos",
         "logistic")
BINARY = ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "logaddexp")
COMPARE = ("lt", "le", "gt", "ge", "eq", "ne")
LOGICAL = ("logical_and", "logical_or", "logical_not")


# -- shape rules ----------------------------------------------------------------
def _same_shape(op, inputs):
    shape = list(inputs[0].shape)
    for other in inputs[1:]:
        if len(other.shape) != len(shape):
            raise AssertionError(f"internal: {op} operands of different rank")
        for k, d in enumerate(other.shape):
            shape[k] = shapes.require_equal(shape[k], d, f"{op}: operand dims")
    return tuple(shape)


def _float_rule(op):
    def rule(inputs, attrs):
        dtypes = {i.dtype for i in inputs}
        if len(dtypes) != 1 or not dtypes <= set(FLOAT_DTYPES):
            raise DTypeError(f"internal: {op} needs float operands of one dtype, got {dtypes}")
        return inputs[0].dtype, _same_shape(op, inputs)

    return rule


def _mask_rule(op):
    def rule(inputs, attrs):
        if op.startswith("logical") and any(i.dtype != "bool" for i in inputs):
            raise DTypeError(f"internal: {op} needs bool operands")
        return "bool", _same_shape(op, inputs)

    return rule


def _select_rule(inputs, attrs):
    cond, a, b = inputs
    if cond.dtype != "bool" or a.dtype != b.dtype:
        raise DTypeError("internal: select(bool, x, x) expected")
    return a.dtype, _same_shape("where", inputs)


for _op in UNARY + BINARY:
    SHAPE[_op] = _float_rule(_op)
for _op in COMPARE + LOGICAL:
    SHAPE[_op] = _mask_rule(_op)
SHAPE["select"] = _select_rule
SHAPE["cast"] = lambda inputs, attrs: (attrs["dtype"], inputs[0].shape)
SHAPE["const"] = lambda inputs, attrs: (attrs["dtype"], ())
SHAPE["dim"] = lambda inputs, attrs: (attrs["dtype"], ())
SHAPE["param"] = lambda inputs, attrs: (attrs["dtype"], attrs["shape"])
# stop_gradient(x) = x, with a zero derivative (e.g. the shift of a stable logsumexp).
SHAPE["stop_gradient"] = lambda inputs, attrs: (inputs[0].dtype, inputs[0].shape)


# -- reference interpreter ------------------------------------------------------------
def _logistic(x):
    # Two branches so that no exp overflows: σ(x) = 1/(1+e^-x) = e^x/(1+e^x).
    e = np.exp(np.minimum(x, 0))
    return np.where(x >= 0, 1 / (1 + np.exp(-np.maximum(x, 0))), e / (1 + e))


_NUMPY_UNARY = {
    "neg": np.negative, "abs": np.abs, "sign": np.sign, "exp": np.exp, "log": np.log,
    "log1p": np.log1p, "expm1": np.expm1, "sqrt": np.sqrt, "tanh": np.tanh, "sin": np.sin,
    "cos": np.cos, "logistic": lambda x: _logistic(x).astype(x.dtype),
}
_NUMPY_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "pow": np.power, "maximum": np.maximum, "minimum": np.minimum, "logaddexp": np.logaddexp,
    "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
    "eq": np.equal, "ne": np.not_equal,
    "logical_and": np.logical_and, "logical_or": np.logical_or,
}


def _numpy_rule(function):
    def rule(node, values, dims):
        with np.errstate(all="ignore"):
            return np.asarray(function(*values), dtype=node.dtype)

    return rule


for _op, _fn in _NUMPY_UNARY.items():
    EVALUATE[_op] = _numpy_rule(_fn)
for _op, _fn in _NUMPY_BINARY.items():
    EVALUATE[_op] = _numpy_rule(_fn)
EVALUATE["logical_not"] = _numpy_rule(np.logical_not)
EVALUATE["select"] = _numpy_rule(np.where)
EVALUATE["stop_gradient"] = lambda node, values, dims: values[0]
EVALUATE["cast"] = lambda node, values, dims: values[0].astype(node.dtype)
EVALUATE["const"] = lambda node, values, dims: np.asarray(node.attr("value"), dtype=node.dtype)
EVALUATE["dim"] = lambda node, values, dims: np.asarray(
    node.attr("dim").evaluate(dims), dtype=node.dtype
)
EVALUATE["param"] = lambda node, values, dims: AssertionError("params are bound, not evaluated")


# -- reverse-mode derivative rules: (ȳ, y) -> (x̄, ...) -------------------------------
def _x(y, k=0):
    return y.inputs[k]


VJP.update({
    "neg": lambda ct, y: (B.neg(ct),),
    "abs": lambda ct, y: (B.mul(ct, B.unary("sign", _x(y))),),
    "exp": lambda ct, y: (B.mul(ct, y),),                                   # (eˣ)' = eˣ
    "log": lambda ct, y: (B.div(ct, _x(y)),),                               # 1/x
    "log1p": lambda ct, y: (B.div(ct, B.add(_x(y), 1.0)),),                 # 1/(1+x)
    "expm1": lambda ct, y: (B.mul(ct, B.add(y, 1.0)),),                     # eˣ = y + 1
    "sqrt": lambda ct, y: (B.div(B.mul(ct, 0.5), y),),                      # 1/(2√x)
    "tanh": lambda ct, y: (B.mul(ct, B.sub(1.0, B.mul(y, y))),),            # 1 − tanh²
    "sin": lambda ct, y: (B.mul(ct, B.unary("cos", _x(y))),),
    "cos": lambda ct, y: (B.neg(B.mul(ct, B.unary("sin", _x(y)))),),
    "logistic": lambda ct, y: (B.mul(ct, B.mul(y, B.sub(1.0, y))),),        # σ(1 − σ)
    "add": lambda ct, y: (ct, ct),
    "sub": lambda ct, y: (ct, B.neg(ct)),
    "mul": lambda ct, y: (B.mul(ct, _x(y, 1)), B.mul(ct, _x(y, 0))),
    "div": lambda ct, y: (B.div(ct, _x(y, 1)), B.neg(B.div(B.mul(ct, y), _x(y, 1)))),
})


def _pow_partials(y):
    """(∂y/∂x, ∂y/∂p) of y = xᵖ; ∂y/∂p is None for a constant exponent.

    ∂y/∂x = p·xᵖ⁻¹ (0 where p = 0 and x = 0: x⁰ is constant there, not 0·∞),
    ∂y/∂p = y·log x (taken as 0 where x = 0, as JAX does)."""
    x, p = y.inputs
    slope = B.mul(p, B.power(x, B.sub(p, 1.0)))
    if B.const_value(p) is not None:
        return slope, None
    both_zero = B.logical("logical_and", B.compare("eq", p, 0.0), B.compare("eq", x, 0.0))
    slope = B.select(both_zero, 0.0, slope)
    log_x = B.select(B.compare("eq", x, 0.0), 0.0, B.unary("log", x))
    return slope, B.mul(y, log_x)


def _pow_vjp(ct, y):
    x_slope, p_slope = _pow_partials(y)
    return B.mul(ct, x_slope), (None if p_slope is None else B.mul(ct, p_slope))


def _share_of_first(strict, y, dtype):
    """1 where the first operand is the larger (smaller, for minimum), 0 where the
    second is, 0.5 at a tie: how the derivative of maximum/minimum is shared."""
    a, b = y.inputs
    share_a = B.select(B.compare(strict, a, b), 1.0, B.select(B.compare("eq", a, b), 0.5, 0.0))
    return B.cast(share_a, dtype)


def _extremum_vjp(strict):
    # The larger (smaller) operand takes the cotangent; a tie splits it evenly.
    def rule(ct, y):
        share_a = _share_of_first(strict, y, ct.dtype)
        return B.mul(ct, share_a), B.mul(ct, B.sub(1.0, share_a))

    return rule


def _select_vjp(ct, y):
    cond = y.inputs[0]
    return None, B.select(cond, ct, 0.0), B.select(cond, 0.0, ct)


def _cast_vjp(ct, y):
    x = y.inputs[0]
    return (B.cast(ct, x.dtype) if x.dtype in FLOAT_DTYPES else None,)


VJP["pow"] = _pow_vjp
# y = log(eᵃ + eᵇ):  ā = ȳ·e^(a−y),  b̄ = ȳ·e^(b−y)  (smooth everywhere, ties included)
VJP["logaddexp"] = lambda ct, y: (
    B.mul(ct, B.unary("exp", B.sub(_x(y, 0), y))),
    B.mul(ct, B.unary("exp", B.sub(_x(y, 1), y))),
)
VJP["maximum"] = _extremum_vjp("gt")
VJP["minimum"] = _extremum_vjp("lt")
VJP["select"] = _select_vjp
VJP["cast"] = _cast_vjp
for _op in COMPARE + LOGICAL + ("sign", "const", "dim", "param", "stop_gradient"):
    VJP[_op] = NOT_DIFFERENTIABLE


# -- forward-mode derivative rules: (ẋ, ...), y -> ẏ ------------------------------------
# A rule runs only when some operand has a tangent, so a unary rule's ẋ is a node;
# an operand without one (None) is a symbolic zero and drops out of the sum.
def _times(t, factor):
    return None if t is None else B.mul(t, factor)


def _negated(t):
    return None if t is None else B.neg(t)


JVP.update({
    "neg": lambda ts, y: B.neg(ts[0]),
    "abs": lambda ts, y: B.mul(ts[0], B.unary("sign", _x(y))),
    "exp": lambda ts, y: B.mul(ts[0], y),                                   # (eˣ)' = eˣ
    "log": lambda ts, y: B.div(ts[0], _x(y)),                               # 1/x
    "log1p": lambda ts, y: B.div(ts[0], B.add(_x(y), 1.0)),                 # 1/(1+x)
    "expm1": lambda ts, y: B.mul(ts[0], B.add(y, 1.0)),                     # eˣ = y + 1
    "sqrt": lambda ts, y: B.div(B.mul(ts[0], 0.5), y),                      # 1/(2√x)
    "tanh": lambda ts, y: B.mul(ts[0], B.sub(1.0, B.mul(y, y))),            # 1 − tanh²
    "sin": lambda ts, y: B.mul(ts[0], B.unary("cos", _x(y))),
    "cos": lambda ts, y: B.neg(B.mul(ts[0], B.unary("sin", _x(y)))),
    "logistic": lambda ts, y: B.mul(ts[0], B.mul(y, B.sub(1.0, y))),        # σ(1 − σ)
    "add": lambda ts, y: tangent_sum(ts[0], ts[1]),
    "sub": lambda ts, y: tangent_sum(ts[0], _negated(ts[1])),
    # (ab)˙ = ȧ b + a ḃ
    "mul": lambda ts, y: tangent_sum(_times(ts[0], _x(y, 1)), _times(ts[1], _x(y, 0))),
    # (a/b)˙ = (ȧ − y ḃ) / b
    "div": lambda ts, y: B.div(tangent_sum(ts[0], _negated(_times(ts[1], y))), _x(y, 1)),
    # y = log(eᵃ + eᵇ):  ẏ = ȧ·e^(a−y) + ḃ·e^(b−y)
    "logaddexp": lambda ts, y: tangent_sum(
        _times(ts[0], B.unary("exp", B.sub(_x(y, 0), y))),
        _times(ts[1], B.unary("exp", B.sub(_x(y, 1), y))),
    ),
    # The cast of a float tangent to the float result (a bool result has no tangent).
    "cast": lambda ts, y: B.cast(ts[0], y.dtype),
})


def _pow_jvp(ts, y):
    # y = xᵖ:  ẏ = ẋ·∂y/∂x + ṗ·∂y/∂p
    x_slope, p_slope = _pow_partials(y)
    p_term = None if p_slope is None else _times(ts[1], p_slope)
    return tangent_sum(_times(ts[0], x_slope), p_term)


def _extremum_jvp(strict):
    # ẏ = s·ȧ + (1 − s)·ḃ with the shares of the VJP rule (the mean of both at a tie).
    def rule(ts, y):
        share_a = _share_of_first(strict, y, y.dtype)
        return tangent_sum(_times(ts[0], share_a), _times(ts[1], B.sub(1.0, share_a)))

    return rule


def _select_jvp(ts, y):
    # where(c, a, b)˙ = where(c, ȧ, ḃ)
    _, a_dot, b_dot = ts
    if a_dot is None and b_dot is None:
        return None
    return B.select(y.inputs[0], 0.0 if a_dot is None else a_dot, 0.0 if b_dot is None else b_dot)


JVP["pow"] = _pow_jvp
JVP["maximum"] = _extremum_jvp("gt")
JVP["minimum"] = _extremum_jvp("lt")
JVP["select"] = _select_jvp
# Masks and leaves have no tangent; stop_gradient's tangent is zero by definition.
for _op in COMPARE + LOGICAL + ("sign", "const", "dim", "param", "stop_gradient"):
    JVP[_op] = NOT_DIFFERENTIABLE
