"""Symbolic arrays: the values a traced function computes with.

A `Tracer` wraps a graph node. Its operators, its array methods and NumPy's
dispatch protocols (`__array_ufunc__`, `__array_function__`) all build nodes
through `numpy_api`. Anything that would need a concrete value (`bool(x)`,
`float(x)`, iteration over a symbolic axis) raises a `TraceError` that says why.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import symbolic
from .errors import TraceError
from .ir import Node
from .symbolic import Dim


class Tracer:
    __slots__ = ("node",)
    __array_priority__ = 1000  # ndarray's operators defer to ours

    def __init__(self, node: Node):
        self.node = node

    # -- array attributes ----------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.node.shape

    @property
    def ndim(self) -> int:
        return self.node.ndim

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.node.dtype)

    @property
    def size(self):
        return symbolic.product(self.node.shape)

    @property
    def T(self) -> "Tracer":
        return api.transpose(self)

    def __len__(self):
        if not self.ndim:
            raise TraceError("len() of a 0-d array")
        n = self.shape[0]
        if isinstance(n, int):
            return n
        raise TraceError(
            f"len() of an array whose first dim {n} is symbolic: its size is only known when "
            "the compiled function is called; use x.shape[0], which works in arithmetic"
        )

    def __iter__(self):
        return (self[k] for k in range(len(self)))

    def __repr__(self):
        return f"Tracer({self.node.dtype}{symbolic.format_shape(self.shape)})"

    # -- no concrete values while tracing ------------------------------------
    def __bool__(self):
        raise TraceError(
            "the truth value of a traced array is not known while tracing: Python control "
            "flow (`if`, `while`, `and`/`or`) on array values cannot be compiled; "
            "use fg.where(condition, a, b) to choose between values element-wise"
        )

    def _concrete(self, kind):
        raise TraceError(
            f"{kind}() of a traced array: its value is not known while tracing; "
            "keep it as an array (fg.where selects between values)"
        )

    def __float__(self):
        self._concrete("float")

    def __int__(self):
        self._concrete("int")

    def __index__(self):
        self._concrete("index")

    def __complex__(self):
        self._concrete("complex")

    def __array__(self, dtype=None, copy=None):
        raise TraceError(
            "a traced array was converted to a NumPy array (np.asarray, np.array or a NumPy "
            "function that fusegrad does not trace): only the supported NumPy functions work "
            "inside a compiled function"
        )

    # -- arithmetic ------------------------------------------------------------
    def __add__(self, o): return api.add(self, o)
    def __radd__(self, o): return api.add(o, self)
    def __sub__(self, o): return api.subtract(self, o)
    def __rsub__(self, o): return api.subtract(o, self)
    def __mul__(self, o): return api.multiply(self, o)
    def __rmul__(self, o): return api.multiply(o, self)
    def __truediv__(self, o): return api.divide(self, o)
    def __rtruediv__(self, o): return api.divide(o, self)
    def __pow__(self, o): return api.power(self, o)
    def __rpow__(self, o): return api.power(o, self)
    def __matmul__(self, o): return api.matmul(self, o)
    def __rmatmul__(self, o): return api.matmul(o, self)
    def __neg__(self): return api.negative(self)
    def __pos__(self): return self
    def __abs__(self): return api.abs(self)
    def __lt__(self, o): return api.less(self, o)
    def __le__(self, o): return api.less_equal(self, o)
    def __gt__(self, o): return api.greater(self, o)
    def __ge__(self, o): return api.greater_equal(self, o)
    def __eq__(self, o): return api.equal(self, o)  # noqa: E704
    def __ne__(self, o): return api.not_equal(self, o)
    def __and__(self, o): return api.logical_and(self, o)
    def __rand__(self, o): return api.logical_and(o, self)
    def __or__(self, o): return api.logical_or(self, o)
    def __ror__(self, o): return api.logical_or(o, self)
    def __invert__(self): return api.logical_not(self)

    def __floordiv__(self, o):
        raise TraceError("floor division (//) is not supported by fusegrad")

    __rfloordiv__ = __mod__ = __rmod__ = __floordiv__
    __hash__ = None

    def __getitem__(self, key): return api.getitem(self, key)

    # -- array methods ---------------------------------------------------------
    def sum(self, axis=None, keepdims=False, **kw): return api.sum(self, axis, keepdims=keepdims, **kw)
    def mean(self, axis=None, keepdims=False, **kw): return api.mean(self, axis, keepdims=keepdims, **kw)
    def max(self, axis=None, keepdims=False, **kw): return api.max(self, axis, keepdims=keepdims, **kw)
    def min(self, axis=None, keepdims=False, **kw): return api.min(self, axis, keepdims=keepdims, **kw)
    def dot(self, other): return api.dot(self, other)
    def clip(self, a_min=None, a_max=None): return api.clip(self, a_min, a_max)
    def squeeze(self, axis=None): return api.squeeze(self, axis)

    def reshape(self, *shape, order="C"):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return api.reshape(self, shape, order=order)

    def transpose(self, *axes):
        if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
            axes = axes[0]
        return api.transpose(self, axes or None)

    def astype(self, dtype):
        return api.astype(self, dtype)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return api.dispatch_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return api.dispatch_function(func, args, kwargs)


def to_node(value, dtype_hint=None) -> "Node | float | Dim":
    """A tracer's node, or a Python number / Dim left as a weak scalar."""
    if isinstance(value, Tracer):
        return value.node
    if isinstance(value, Dim):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, np.ndarray):
        raise TraceError(
            f"a NumPy array constant of shape {value.shape} is used inside a traced function; "
            "fusegrad compiles scalar constants only: pass the array as an argument"
        )
    if value is None:
        raise TraceError("None was used as an array operand")
    raise TraceError(f"a value of type {type(value).__name__} cannot be used in a traced function")


def wrap(node: Node) -> Tracer:
    return Tracer(node)


# Symbolic dims in arithmetic with floats or arrays become traced scalars:
# `loss / X.shape[0]`, `0.5 * n`. Dim-with-int arithmetic stays a Dim.
def _dim_binary(op_name, reflected=False):
    int_op = getattr(Dim, f"_int_{op_name}", None)

    def method(self, other):
        if isinstance(other, (int, Dim)) and not isinstance(other, bool) and int_op is not None:
            return int_op(self, other) if not reflected else int_op(symbolic.as_dim(other), self)
        a, b = (other, self) if reflected else (self, other)
        return getattr(api, op_name)(a, b)

    return method


for _name, _func in (("add", "add"), ("sub", "subtract"), ("mul", "multiply")):
    setattr(Dim, f"_int_{_func}", getattr(Dim, f"__{_name}__"))
for _func, _dunder in (("add", "add"), ("subtract", "sub"), ("multiply", "mul"),
                       ("divide", "truediv"), ("power", "pow")):
    setattr(Dim, f"__{_dunder}__", _dim_binary(_func))
    setattr(Dim, f"__r{_dunder}__", _dim_binary(_func, reflected=True))


def _dim_index(self):
    raise TraceError(
        f"the dim {self!r} is symbolic: its size is only known when the compiled function is "
        "called, so it cannot be used where Python needs an int (range, np.zeros, ...)"
    )


Dim.__index__ = _dim_index
Dim.__int__ = _dim_index
Dim.__float__ = _dim_index

from . import numpy_api as api  # noqa: E402  (the functions the operators call)
