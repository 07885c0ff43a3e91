"""The NumPy functions fusegrad traces, with NumPy's names and semantics.

Each function takes tracers or Python numbers and returns a tracer. They are
exported as `fg.<name>` and reached from NumPy through `__array_ufunc__` and
`__array_function__` (the tables `UFUNCS` and `FUNCTIONS` at the end). A NumPy
function missing from those tables raises a `TraceError` that names it.
"""

from __future__ import annotations

import builtins
import operator

import numpy as np

from . import build as B
from . import shapes, symbolic
from .errors import DTypeError, ShapeError, TraceError
from .ir import Node
from .symbolic import Dim
from .tracer import Tracer, to_node, wrap


def _node(x) -> Node:
    value = to_node(x)
    if isinstance(value, Node):
        return value
    if isinstance(value, Dim):
        return B.dim_value(value)
    return B.constant(value, "bool" if isinstance(value, bool) else "float64")


def _is_traced(*values) -> bool:
    return builtins.any(isinstance(v, Tracer) for v in values)


def _unary(op):
    def function(x):
        return wrap(B.unary(op, to_node(x)))

    return function


def _binary(build_fn):
    def function(a, b):
        return wrap(build_fn(to_node(a), to_node(b)))

    return function


# -- element-wise -------------------------------------------------------------------
add = _binary(B.add)
subtract = _binary(B.sub)
multiply = _binary(B.mul)
divide = _binary(B.div)
power = _binary(B.power)
maximum = _binary(lambda a, b: B.binary("maximum", a, b))
minimum = _binary(lambda a, b: B.binary("minimum", a, b))
less = _binary(lambda a, b: B.compare("lt", a, b))
less_equal = _binary(lambda a, b: B.compare("le", a, b))
greater = _binary(lambda a, b: B.compare("gt", a, b))
greater_equal = _binary(lambda a, b: B.compare("ge", a, b))
equal = _binary(lambda a, b: B.compare("eq", a, b))
not_equal = _binary(lambda a, b: B.compare("ne", a, b))
logical_and = _binary(lambda a, b: B.logical("logical_and", a, b))
logical_or = _binary(lambda a, b: B.logical("logical_or", a, b))
negative = _unary("neg")
abs = _unary("abs")
absolute = abs
sign = _unary("sign")
exp = _unary("exp")
log = _unary("log")
log1p = _unary("log1p")
expm1 = _unary("expm1")
sqrt = _unary("sqrt")
tanh = _unary("tanh")
sin = _unary("sin")
cos = _unary("cos")
sigmoid = _unary("logistic")


def logical_not(x):
    return wrap(B.logical("logical_not", to_node(x)))


def square(x):
    x = _node(x)
    return wrap(B.mul(x, x))


def reciprocal(x):
    return wrap(B.div(1.0, to_node(x)))


def where(condition, x, y):
    return wrap(B.select(to_node(condition), to_node(x), to_node(y)))


def clip(a, a_min=None, a_max=None):
    result = _node(a)
    if a_min is None and a_max is None:
        raise ShapeError("clip: a_min and a_max cannot both be None")
    if a_min is not None:
        result = B.binary("maximum", result, to_node(a_min))
    if a_max is not None:
        result = B.binary("minimum", result, to_node(a_max))
    return wrap(result)


def logaddexp(a, b):
    """log(eᵃ + eᵇ), computed without overflow (a primitive: its derivative is smooth
    at a = b, where one built from max and |a − b| would have a kink)."""
    return wrap(B.binary("logaddexp", to_node(a), to_node(b)))


def softplus(x):
    # log(1 + eˣ) = max(x, 0) + log1p(e^−|x|)
    return logaddexp(x, 0.0)


def relu(x):
    return maximum(x, 0.0)


def stop_gradient(x):
    """x, as a constant for differentiation (its derivative is zero)."""
    return wrap(B.stop_gradient(_node(x)))


def astype(x, dtype):
    name = np.dtype(dtype).name
    if name not in ("float32", "float64", "bool"):
        raise DTypeError(f"astype: fusegrad supports float32, float64 and bool, not {name}")
    return wrap(B.cast(_node(x), name))


def zeros_like(x, dtype=None):
    return full_like(x, 0.0, dtype)


def ones_like(x, dtype=None):
    return full_like(x, 1.0, dtype)


def full_like(x, fill_value, dtype=None):
    node = _node(x)
    name = np.dtype(dtype).name if dtype is not None else node.dtype
    return wrap(B.constant(fill_value, name, node.shape))


# -- reductions ----------------------------------------------------------------------
def _reduction(op, name):
    def function(a, axis=None, dtype=None, out=None, keepdims=False, **unsupported):
        _no_out(name, out, unsupported)
        x = _node(a)
        axes = shapes.normalize_axes(axis, x.ndim, f"{name}(axis={axis!r})")
        result = B.reduce(op, x, axes)
        if keepdims:
            result = B.expand_axes(result, axes, x.ndim)
        if dtype is not None:
            result = B.cast(result, np.dtype(dtype).name)
        return wrap(result)

    function.__name__ = name
    return function


def _no_out(name, out, unsupported):
    if out is not None:
        raise TraceError(f"{name}: out= is not supported inside a traced function")
    for key in unsupported:
        raise TraceError(f"{name}: the argument {key}= is not supported by fusegrad")


sum = _reduction("reduce_sum", "sum")
max = _reduction("reduce_max", "max")
min = _reduction("reduce_min", "min")
amax, amin = max, min


def mean(a, axis=None, dtype=None, out=None, keepdims=False, **unsupported):
    _no_out("mean", out, unsupported)
    x = _node(a)
    axes = shapes.normalize_axes(axis, x.ndim, f"mean(axis={axis!r})")
    total = sum(a, axis=axis, dtype=dtype, keepdims=keepdims).node
    count = symbolic.product([x.shape[k] for k in axes])
    return wrap(B.div(total, B.dim_value(count, total.dtype)))


def logsumexp(a, axis=None, keepdims=False):
    # log Σ eˣ = m + log Σ e^(x−m) with m = max x, so that no exp overflows.
    # m is a constant shift of the identity, so no derivative flows through it.
    x = _node(a)
    axes = shapes.normalize_axes(axis, x.ndim, f"logsumexp(axis={axis!r})")
    peak = B.reduce("reduce_max", x, axes)
    # An infinite max shifts by 0 instead (inf − inf would be NaN): the sum is then
    # inf (some x = inf) or 0 (all x = −inf), whose log is the right answer.
    peak = B.select(B.compare("lt", B.unary("abs", peak), float("inf")), peak, 0.0)
    peak = B.stop_gradient(peak)
    peak_back = B.broadcast_to(B.expand_axes(peak, axes, x.ndim), x.shape)
    total = B.reduce("reduce_sum", B.unary("exp", B.sub(x, peak_back)), axes)
    result = B.add(B.unary("log", total), peak)
    if keepdims:
        result = B.expand_axes(result, axes, x.ndim)
    return wrap(result)


def log_softmax(a, axis=-1):
    x = _node(a)
    return wrap(B.sub(x, logsumexp(a, axis=axis, keepdims=True).node))


def softmax(a, axis=-1):
    return exp(log_softmax(a, axis=axis))


# -- linear algebra --------------------------------------------------------------------
def matmul(a, b):
    a, b = _node(a), _node(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError("matmul: operands must be at least 1-D (use * for scalars)")
    if a.ndim > 2 or b.ndim > 2:
        raise ShapeError(
            f"matmul: fusegrad supports 1-D and 2-D operands, got ranks {a.ndim} and {b.ndim}"
        )
    a2 = B.reshape(a, (1, a.shape[0])) if a.ndim == 1 else a
    b2 = B.reshape(b, (b.shape[0], 1)) if b.ndim == 1 else b
    product = B.matmul(a2, b2)
    shape = (a.shape[:1] if a.ndim == 2 else ()) + (b.shape[1:] if b.ndim == 2 else ())
    return wrap(B.reshape(product, shape))


def dot(a, b):
    a_node, b_node = _node(a), _node(b)
    if a_node.ndim == 0 or b_node.ndim == 0:
        return multiply(a, b)
    return matmul(a, b)


# -- layout --------------------------------------------------------------------------------
def transpose(a, axes=None):
    x = _node(a)
    if axes is None:
        perm = tuple(reversed(range(x.ndim)))
    else:
        perm = tuple(int(k) % x.ndim if x.ndim else int(k) for k in axes)
        if sorted(perm) != list(range(x.ndim)):
            raise ShapeError(f"transpose: axes {tuple(axes)} do not match an array of ndim {x.ndim}")
    return wrap(B.transpose(x, perm))


def reshape(a, newshape=None, order="C", *, shape=None):
    if order != "C":
        raise TraceError("reshape: only order='C' is supported")
    target = shape if shape is not None else newshape
    x = _node(a)
    if not isinstance(target, (tuple, list)):
        target = (target,)
    return wrap(B.reshape(x, _resolve_shape(x.shape, tuple(target))))


def _resolve_shape(old, new):
    """Replace a -1 in `new` by the dim that keeps the size of `old`."""
    new = tuple(int(d) if isinstance(d, np.integer) else d for d in new)
    for d in new:
        if not isinstance(d, (int, Dim)) or isinstance(d, bool):
            raise ShapeError(f"reshape: shape entries must be ints or dims, got {d!r}")
    unknown = [k for k, d in enumerate(new) if isinstance(d, int) and d == -1]
    if len(unknown) > 1:
        raise ShapeError("reshape: can only specify one unknown dimension")
    if builtins.any(isinstance(d, int) and d < -1 for d in new):
        raise ShapeError(f"reshape: negative dimension in {new}")
    if not unknown:
        return new
    # Cancel the factors the two shapes share; what is left of `old` is the -1.
    remaining = [shapes.canonical(d) for d in old]
    constant = 1
    for d in new:
        if isinstance(d, int) and d == -1:
            continue
        d = shapes.canonical(d)
        match = next((k for k, r in enumerate(remaining) if symbolic.dims_equal(r, d)), None)
        if match is not None:
            remaining.pop(match)
        elif isinstance(d, int):
            constant *= d
        else:
            raise ShapeError(f"reshape: cannot infer -1 in {symbolic.format_shape(new)} "
                             f"from shape {symbolic.format_shape(old)}")
    total = symbolic.product(remaining)
    if constant == 0:
        raise ShapeError("reshape: cannot infer -1 with a zero-size dimension")
    if isinstance(total, int):
        if total % constant:
            raise ShapeError(f"cannot reshape an array of shape {symbolic.format_shape(old)} "
                             f"into shape {symbolic.format_shape(new)}")
        inferred = total // constant
    else:
        inferred = symbolic.simplify(total // constant)
    return tuple(inferred if k == unknown[0] else d for k, d in enumerate(new))


def broadcast_to(array, shape):
    x = _node(array)
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    return wrap(B.broadcast_to(x, shape))


def expand_dims(a, axis):
    x = _node(a)
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    ndim = x.ndim + len(axes)
    axes = shapes.normalize_axes(tuple(axes), ndim, f"expand_dims(axis={axis!r})")
    return wrap(B.expand_axes(x, axes, ndim))


def squeeze(a, axis=None):
    x = _node(a)
    if axis is None:
        axes = tuple(k for k, d in enumerate(x.shape) if shapes.is_one(d))
    else:
        axes = shapes.normalize_axes(axis, x.ndim, f"squeeze(axis={axis!r})")
        for k in axes:
            if not shapes.is_one(x.shape[k]):
                raise ShapeError(f"squeeze: cannot select an axis to squeeze out which has size "
                                 f"not equal to one (axis {k} has size {x.shape[k]})")
    return wrap(B.reshape(x, tuple(d for k, d in enumerate(x.shape) if k not in axes)))


def getitem(a, key):
    """Basic indexing: ints, slices, None and Ellipsis."""
    x = _node(a)
    key = key if isinstance(key, tuple) else (key,)
    for k in key:
        if isinstance(k, (bool, np.bool_)):
            raise TraceError(
                "indexing with a bool is a mask index, which fusegrad does not support; "
                "use fg.where for masks"
            )
        if isinstance(k, (Tracer, np.ndarray, list)) or (
            not isinstance(k, (int, slice, type(None), type(Ellipsis), np.integer, Dim))
        ):
            raise TraceError(
                f"indexing with {type(k).__name__} is not supported: fusegrad supports basic "
                "indexing (ints, slices, None, ...); use fg.where for masks"
            )
    used = builtins.sum(1 for k in key if k is not None and k is not Ellipsis)
    if builtins.sum(1 for k in key if k is Ellipsis) > 1:
        raise ShapeError("an index can only have a single ellipsis ('...')")
    if used > x.ndim:
        raise ShapeError(f"too many indices: array is {x.ndim}-dimensional, but {used} were indexed")
    expanded = []
    for k in key:
        if k is Ellipsis:
            expanded.extend([slice(None)] * (x.ndim - used))
        else:
            expanded.append(k)
    expanded.extend([slice(None)] * (x.ndim - builtins.sum(1 for k in expanded if k is not None)))

    starts, steps, sizes, out_shape = [], [], [], []
    axis = 0
    for k in expanded:
        if k is None:
            out_shape.append(1)
            continue
        n = x.shape[axis]
        if isinstance(k, slice):
            start, step, size = _slice_axis(n, k, axis)
            out_shape.append(size)
        else:
            start, step, size = _index_axis(n, operator.index(k) if not isinstance(k, Dim) else k, axis)
        starts.append(start)
        steps.append(step)
        sizes.append(size)
        axis += 1
    sliced = B.slice_axes(x, starts, steps, sizes)
    return wrap(B.reshape(sliced, tuple(out_shape)))


def _index_axis(n, index, axis):
    n = shapes.canonical(n)
    where = f"index {index} is out of bounds for axis {axis} with size {n}"
    if isinstance(index, int) and index < 0:
        start = symbolic.simplify(symbolic.as_dim(n) + index)
        shapes.require_at_least(start, 0, where)
    else:
        start = index
        shapes.require_at_least(n, symbolic.as_dim(index) + 1, where)
    return start, 1, 1


def _slice_axis(n, slc, axis):
    n = shapes.canonical(n)
    for part in (slc.start, slc.stop, slc.step):
        if part is not None and not isinstance(part, (int, np.integer)):
            raise TraceError(f"slice bounds must be ints, got {part!r}")
    step = 1 if slc.step is None else int(slc.step)
    if step == 0:
        raise ShapeError("slice step cannot be zero")
    if isinstance(n, int):
        start, stop, step = slice(slc.start, slc.stop, step).indices(n)
        return start, step, len(range(start, stop, step))
    # Symbolic length: Python's clamping written with max/min of dims. A start that
    # is only wrong when the slice is empty is left unclamped (it is never read).
    if step > 0:
        start = _bound(n, slc.start, default=0)
        stop = _bound(n, slc.stop, default=n)
        if isinstance(slc.stop, (int, np.integer)) and slc.stop >= 0:
            stop = symbolic.dim_min(int(slc.stop), n)
        extent = symbolic.as_dim(stop) - start
    else:
        start = _bound(n, slc.start, default=symbolic.as_dim(n) - 1, upper=True, floor=-1)
        stop = _bound(n, slc.stop, default=-1, floor=-1)
        extent = symbolic.as_dim(start) - stop
    size = symbolic.dim_max(symbolic.simplify((extent + (builtins.abs(step) - 1)) // builtins.abs(step)), 0)
    return start, step, size


def _bound(n, value, default, upper=False, floor=0):
    """A slice bound on an axis of symbolic length n: negative values count from the
    end and are clamped at `floor`; `upper` clamps non-negative ones at n − 1."""
    if value is None:
        return default
    value = int(value)
    if value >= 0:
        return symbolic.dim_min(value, symbolic.as_dim(n) - 1) if upper else value
    return symbolic.dim_max(symbolic.as_dim(n) + value, floor)


# -- NumPy dispatch -------------------------------------------------------------------------
UFUNCS = {
    np.add: add, np.subtract: subtract, np.multiply: multiply, np.divide: divide,
    np.true_divide: divide, np.power: power, np.negative: negative,
    np.float_power: lambda a, b: power(astype(a, "float64"), b),
    np.positive: lambda x: x, np.absolute: abs, np.sign: sign, np.exp: exp, np.log: log,
    np.log1p: log1p, np.expm1: expm1, np.sqrt: sqrt, np.square: square,
    np.reciprocal: reciprocal, np.tanh: tanh, np.sin: sin, np.cos: cos, np.maximum: maximum,
    np.minimum: minimum, np.logaddexp: logaddexp,
    np.less: less, np.less_equal: less_equal, np.greater: greater,
    np.greater_equal: greater_equal, np.equal: equal, np.not_equal: not_equal,
    np.logical_and: logical_and, np.logical_or: logical_or, np.logical_not: logical_not,
    np.matmul: matmul,
}

FUNCTIONS = {
    np.sum: sum, np.mean: mean, np.max: max, np.min: min, np.amax: max, np.amin: min,
    np.where: where, np.clip: clip, np.dot: dot, np.matmul: matmul, np.transpose: transpose,
    np.reshape: reshape, np.broadcast_to: broadcast_to, np.expand_dims: expand_dims,
    np.squeeze: squeeze, np.zeros_like: zeros_like, np.ones_like: ones_like,
    np.full_like: full_like, np.abs: abs, np.square: square,
}


def _numpy_name(func) -> str:
    module = getattr(func, "__module__", None) or "numpy"
    module = module.replace("numpy._core.", "numpy.").replace("numpy.core.", "numpy.")
    module = "np" + module[len("numpy"):] if module.startswith("numpy") else module
    if module in ("np.multiarray", "np.fromnumeric", "np._methods", "np.numeric"):
        module = "np"
    return f"{module}.{getattr(func, '__name__', repr(func))}"


def dispatch_ufunc(ufunc, method, inputs, kwargs):
    if method != "__call__":
        raise TraceError(f"np.{ufunc.__name__}.{method} is not supported by fusegrad")
    function = UFUNCS.get(ufunc)
    if function is None:
        raise TraceError(f"np.{ufunc.__name__} is not supported by fusegrad")
    for key, value in kwargs.items():
        if key == "out" and value is not None:
            raise TraceError(f"np.{ufunc.__name__}: out= is not supported inside a traced function")
        if key not in ("out",):
            raise TraceError(f"np.{ufunc.__name__}: the argument {key}= is not supported")
    return function(*inputs)


def dispatch_function(func, args, kwargs):
    function = FUNCTIONS.get(func)
    if function is None:
        raise TraceError(f"{_numpy_name(func)} is not supported by fusegrad")
    return function(*args, **kwargs)
