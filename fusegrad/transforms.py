"""Composable transforms on traceable functions: `grad`, `value_and_grad`, `jvp`,
`vjp`, `hvp`; and `check_grad`, which tests a gradient against finite differences.

A transform returns a new traceable function (or, for `jvp` and `vjp`, applies
one now, as JAX's do). Called inside a trace (with symbolic arrays) it extends
the graph: derivatives are built by the reverse-mode and forward-mode graph
transforms (`compiler.autodiff`, `compiler.forward`), so transforms nest (a
gradient of a gradient, a jvp of a gradient). Called with NumPy arrays it
compiles itself and runs.

`jvp` and `vjp` differentiate `f` at fresh stand-in parameters, substituted by
the real primals afterwards. So a value that `f` closes over is a constant even
when it is the very node passed as a primal: in `jvp(lambda y: y * x, (x,), (v,))`
the tangent is `x·v`, not `2x·v` (no perturbation confusion).
"""

from __future__ import annotations

import functools
import inspect
import itertools

import numpy as np

from .compiler import autodiff, forward, shapes, symbolic
from .compiler import build as B
from .compiler.errors import DTypeError, FusegradError, ShapeError, TraceError
from .compiler.ir import FLOAT_DTYPES, Node, make, toposort
from .compiler.simplify import simplify_nodes
from .compiler.trace import flatten_outputs
from .compiler.tracer import Tracer, to_node, wrap


def resolve_wrt(fn, wrt) -> tuple[tuple[int, ...], bool]:
    """Positions of the `wrt` parameters (names or indices), and whether one was given
    as a tuple (then gradients come back as a tuple, JAX's argnums convention)."""
    names = parameter_names(fn)
    as_tuple = isinstance(wrt, (tuple, list))
    items = tuple(wrt) if as_tuple else (wrt,)
    if as_tuple and not items:
        raise FusegradError("wrt=() names no parameter")
    positions = []
    for item in items:
        if isinstance(item, str):
            if item not in names:
                raise FusegradError(
                    f"wrt={item!r}: {getattr(fn, '__name__', 'the function')} has no parameter "
                    f"{item!r} (its parameters: {', '.join(names)})"
                )
            positions.append(names.index(item))
        elif isinstance(item, int) and not isinstance(item, bool):
            if not -len(names) <= item < len(names):
                raise FusegradError(
                    f"wrt={item}: {getattr(fn, '__name__', 'the function')} has "
                    f"{len(names)} parameters"
                )
            positions.append(item % len(names))
        else:
            raise FusegradError(f"wrt must name parameters by name or position, got {item!r}")
    return tuple(positions), as_tuple


def parameter_names(fn) -> list[str]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        raise TraceError(f"cannot read the parameters of {fn!r}") from None
    names = []
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TraceError(
                f"{getattr(fn, '__name__', fn)}: *args and **kwargs are not supported; "
                "name each array parameter"
            )
        names.append(p.name)
    return names


def value_and_grad(fn=None, wrt=0):
    """`f -> (lambda *args: (f(*args), ∇f(*args)))` for a scalar-valued f."""
    if fn is None:
        return functools.partial(value_and_grad, wrt=wrt)
    positions, as_tuple = resolve_wrt(fn, wrt)

    @functools.wraps(fn)
    def value_and_grad_fn(*args):
        if not any(isinstance(a, Tracer) for a in args):
            from .api import compile

            return compile(value_and_grad_fn)(*args)
        value = fn(*args)
        if not isinstance(value, Tracer):
            raise TraceError(
                f"{fn.__name__} must return a scalar array to be differentiated, "
                f"got {type(value).__name__}"
            )
        if value.node.shape != ():
            raise TraceError(
                f"{fn.__name__} must return a scalar to take its gradient, got shape "
                f"{value.node.shape}; reduce it with .sum() or .mean()"
            )
        targets = []
        for k in positions:
            if not isinstance(args[k], Tracer):
                raise TraceError(f"cannot differentiate with respect to a non-array argument {k}")
            targets.append(args[k].node)
        grads = [wrap(g) for g in autodiff.grad(value.node, targets)]
        return value, (tuple(grads) if as_tuple else grads[0])

    value_and_grad_fn.__signature__ = inspect.signature(fn)
    names = parameter_names(fn)
    value_and_grad_fn.fusegrad_labels = [_name(fn)] + [("grad", names[k]) for k in positions]
    return value_and_grad_fn


def grad(fn=None, wrt=0):
    """`f -> ∇f` for a scalar-valued f (one gradient, or a tuple for a tuple `wrt`)."""
    if fn is None:
        return functools.partial(grad, wrt=wrt)
    both = value_and_grad(fn, wrt)

    @functools.wraps(fn)
    def grad_fn(*args):
        if not any(isinstance(a, Tracer) for a in args):
            from .api import compile

            return compile(grad_fn)(*args)
        return both(*args)[1]

    grad_fn.__signature__ = inspect.signature(fn)
    grad_fn.fusegrad_labels = both.fusegrad_labels[1:]
    return grad_fn


def _name(fn) -> str:
    """The function's name for `explain` ("f" for a lambda)."""
    name = getattr(fn, "__name__", "f")
    return "f" if name.startswith("<") else name


# -- evaluating f at stand-in primals ---------------------------------------------------------
_stand_in_ids = itertools.count()


def _stand_in(primal: Node) -> Node:
    """A fresh param like `primal`, that `f` is traced at (never left in a graph)."""
    return make("param", name=f"__primal{next(_stand_in_ids)}", index=-1, dtype=primal.dtype,
                shape=primal.shape)


def _substitute(nodes, mapping: dict[int, Node]) -> list[Node]:
    """The nodes rebuilt with mapping[id] in place of each node whose id is mapped."""
    rebuilt = dict(mapping)
    for node in toposort(nodes):
        if node.id in rebuilt or not any(i.id in rebuilt for i in node.inputs):
            continue
        inputs = [rebuilt.get(i.id, i) for i in node.inputs]
        rebuilt[node.id] = make(node.op, inputs, **dict(node.attrs))
    return [rebuilt.get(n.id, n) for n in nodes]


def _traceable(fn):
    """The Python function of a compiled one (`fg.compile(f)` is traced as f)."""
    from .api import CompiledFunction

    return fn.fn if isinstance(fn, CompiledFunction) else fn


def _output_nodes(fn, result) -> tuple[list[Node], object]:
    leaves, tree = flatten_outputs(result)
    nodes = []
    for k, leaf in enumerate(leaves):
        value = to_node(leaf) if leaf is not None else None
        if isinstance(value, Node):
            nodes.append(value)
        elif isinstance(value, symbolic.Dim):
            nodes.append(B.dim_value(value))
        elif isinstance(value, (bool, int, float)):
            nodes.append(B.constant(value, "bool" if isinstance(value, bool) else "float64"))
        else:
            raise TraceError(f"{_name(fn)} returned {type(leaf).__name__} as output {k}: "
                             "return arrays or tuples of arrays")
    return nodes, tree


def _trace_at(fn, primals: list[Node]):
    """(stand-ins, f's output nodes at the stand-ins, the output tree).

    The outputs are simplified before they are differentiated: the jvp of a gradient
    then starts from σ(u), not from eᵘ/(eᵘ + 1), which is NaN where eᵘ overflows."""
    stand_ins = [_stand_in(p) for p in primals]
    outputs, tree = _output_nodes(fn, _traceable(fn)(*[Tracer(s) for s in stand_ins]))
    return stand_ins, simplify_nodes(outputs), tree


def _argument_names(fn, count: int) -> list[str]:
    """f's parameter names for `count` positional arguments (x0, x1, … when unknown)."""
    try:
        names = parameter_names(_traceable(fn))
    except TraceError:  # *args
        names = []
    if len(names) < count:
        return [f"x{k}" for k in range(count)]
    return names[:count]


def _fresh_names(wanted, taken) -> list[str]:
    taken = set(taken)
    result = []
    for name in wanted:
        candidate, k = name, 1
        while candidate in taken:
            candidate, k = f"{name}{k}", k + 1
        taken.add(candidate)
        result.append(candidate)
    return result


def _with_parameters(body, names, name: str):
    """`body(*args)` as a function whose signature names its parameters (so that
    `compile` can trace it and name its arguments in errors)."""

    def function(*args):
        return body(*args)

    function.__name__ = function.__qualname__ = name
    function.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
    return function


def _is_traced(values) -> bool:
    return any(isinstance(v, Tracer) for v in values)


def _sequence(value, what: str) -> tuple:
    if not isinstance(value, (tuple, list)):
        raise FusegradError(f"{what} must be a tuple (one entry per argument of f), "
                            f"got {type(value).__name__}")
    return tuple(value)


# -- checking tangents and cotangents against their primals -------------------------------------
def _traced_primal(value, label: str) -> Node:
    if isinstance(value, Tracer):
        return value.node
    raise TraceError(f"{label} is a {type(value).__name__}; inside a traced function every "
                     "primal must be a traced array (pass it as an argument of the function)")


def _traced_like(value, like: Node, label: str) -> Node | None:
    """A tangent (or cotangent) for `like` as a node of like's shape and dtype; None is a
    symbolic zero, a Python number fills the shape."""
    if value is None or like.dtype not in FLOAT_DTYPES:
        return None
    if not isinstance(value, Tracer):
        number = to_node(value)
        if isinstance(number, symbolic.Dim):
            number = B.dim_value(number, like.dtype)
        if isinstance(number, Node):
            return B.broadcast_to(B.cast(number, like.dtype), like.shape)
        return B.constant(number, like.dtype, like.shape)
    node = value.node
    expected = symbolic.format_shape(like.shape)
    if node.ndim != like.ndim:
        raise ShapeError(f"{label} has shape {symbolic.format_shape(node.shape)}, "
                         f"expected {expected}")
    for axis, (got, want) in enumerate(zip(node.shape, like.shape)):
        shapes.require_equal(want, got, f"{label}: axis {axis} must match {expected}")
    if node.dtype in FLOAT_DTYPES and node.dtype != like.dtype:
        raise DTypeError(f"{label} has dtype {node.dtype}, expected {like.dtype}")
    return B.cast(node, like.dtype)


def _as_arrays(values) -> list[np.ndarray]:
    """Arguments as `compile` would see them: integer arrays as float64, and Python
    numbers weak (float32 when every array argument is float32)."""
    arrays = [np.asarray(v) for v in values]
    array_dtypes = {a.dtype for a, v in zip(arrays, values) if isinstance(v, np.ndarray)}
    number_dtype = np.float32 if array_dtypes == {np.dtype(np.float32)} else np.float64
    converted = []
    for a, v in zip(arrays, values):
        if a.dtype.kind in "iu" or (not isinstance(v, np.ndarray) and a.dtype.kind == "f"):
            a = a.astype(np.float64 if isinstance(v, np.ndarray) else number_dtype)
        converted.append(a)
    return converted


def _array_like(value, like: np.ndarray, label: str) -> np.ndarray | None:
    """A tangent (or cotangent) array for `like`: its shape, and its dtype when a float."""
    if value is None:
        return None
    array = np.asarray(value)
    if array.shape != like.shape:
        raise ShapeError(f"{label} has shape {array.shape}, expected {like.shape}")
    if like.dtype.kind != "f":
        return array
    if isinstance(value, np.ndarray) and array.dtype.kind == "f" and array.dtype != like.dtype:
        raise DTypeError(f"{label} has dtype {array.dtype}, expected {like.dtype}")
    if array.dtype.kind not in "biuf":
        raise DTypeError(f"{label} has dtype {array.dtype}, expected {like.dtype}")
    return array.astype(like.dtype, copy=False)


def _zeros_where_none(nodes, likes) -> list[Node]:
    return [B.zeros(like.shape, like.dtype) if n is None else B.cast(n, like.dtype)
            for n, like in zip(nodes, likes)]


# -- forward mode ---------------------------------------------------------------------------
def jvp(fn, primals, tangents):
    """`(f(*primals), ∂f(primals)·tangents)`: the value and the directional derivative.

    `primals` and `tangents` are tuples with one entry per argument of f; a tangent
    has its primal's shape and dtype (None is a zero tangent). f may return an array
    or a nested tuple of arrays; the tangent comes back in the same structure.
    Inside a traced function it extends the graph (so it nests: `grad` of `jvp`,
    `jvp` of `grad`); with NumPy arrays it compiles one kernel for both and runs it.
    """
    primals = _sequence(primals, "fg.jvp: primals")
    tangents = _sequence(tangents, "fg.jvp: tangents")
    if len(primals) != len(tangents):
        raise FusegradError(f"fg.jvp: {len(primals)} primals but {len(tangents)} tangents")
    names = _argument_names(fn, len(primals))
    if _is_traced(primals + tangents):
        return _jvp_traced(fn, primals, tangents, names)
    return _jvp_compiled(fn, primals, tangents, names)


def _tangent_label(names, k: int) -> str:
    return f"fg.jvp: the tangent for argument {names[k]!r} (position {k})"


def _jvp_traced(fn, primals, tangents, names):
    nodes = [_traced_primal(p, f"fg.jvp: primal {names[k]!r}") for k, p in enumerate(primals)]
    dots = [_traced_like(t, p, _tangent_label(names, k))
            for k, (t, p) in enumerate(zip(tangents, nodes))]
    stand_ins, outputs, tree = _trace_at(fn, nodes)
    out_dots = _zeros_where_none(forward.jvp(outputs, stand_ins, dots), outputs)
    restored = _substitute(outputs + out_dots, {s.id: p for s, p in zip(stand_ins, nodes)})
    values = [wrap(n) for n in restored[: len(outputs)]]
    derivatives = [wrap(n) for n in restored[len(outputs):]]
    return tree.unflatten(values), tree.unflatten(derivatives)


def _jvp_compiled(fn, primals, tangents, names):
    from .api import compile

    arrays = _as_arrays(primals)
    dots = [_array_like(t, a, _tangent_label(names, k))
            for k, (t, a) in enumerate(zip(tangents, arrays))]
    given = [k for k, d in enumerate(dots) if d is not None]
    dot_names = _fresh_names([f"{names[k]}_dot" for k in given], names)

    def body(*args):
        args_dots = [None] * len(arrays)
        for k, dot in zip(given, args[len(arrays):]):
            args_dots[k] = dot
        return _jvp_traced(fn, args[: len(arrays)], args_dots, names)

    kernel = _with_parameters(body, names + dot_names, f"jvp_{_name(fn)}")
    return compile(kernel)(*arrays, *[dots[k] for k in given])


# -- reverse mode ---------------------------------------------------------------------------
def vjp(fn, *primals):
    """`(f(*primals), vjp_fn)` where `vjp_fn(cotangent)` is the tuple of cotangents
    `(∂f/∂x₁ᵀ·cotangent, …)`, one per primal, each of its primal's shape and dtype.

    The cotangent has the structure of f's output (an array, or a nested tuple of
    arrays; None entries are zero). Inside a traced function both extend the graph;
    with NumPy arrays `f` runs as a compiled kernel and `vjp_fn` runs a compiled
    kernel of `(primals, cotangent) → cotangents`.
    """
    names = _argument_names(fn, len(primals))
    if _is_traced(primals):
        return _vjp_traced(fn, primals, names)
    return _vjp_compiled(fn, primals, names)


def _cotangent_leaves(cotangent, tree, count: int) -> list:
    leaves, cotangent_tree = flatten_outputs(cotangent)
    if cotangent_tree.structure != tree.structure:
        raise FusegradError(
            f"vjp_fn: the cotangent must have the structure of f's output ({count} "
            f"array{'s' if count != 1 else ''} nested as {tree.structure}), got "
            f"{len(leaves)} nested as {cotangent_tree.structure}")
    return leaves


def _cotangent_label(k: int, count: int) -> str:
    return "vjp_fn: the cotangent" + (f" of output {k}" if count > 1 else "")


def _vjp_traced(fn, primals, names):
    nodes = [_traced_primal(p, f"fg.vjp: primal {names[k]!r}") for k, p in enumerate(primals)]
    stand_ins, outputs, tree = _trace_at(fn, nodes)
    mapping = {s.id: p for s, p in zip(stand_ins, nodes)}

    def vjp_fn(cotangent):
        leaves = _cotangent_leaves(cotangent, tree, len(outputs))
        bars = [_traced_like(c, out, _cotangent_label(k, len(outputs)))
                for k, (c, out) in enumerate(zip(leaves, outputs))]
        results = _zeros_where_none(autodiff.vjp(outputs, bars, stand_ins), stand_ins)
        return tuple(wrap(n) for n in _substitute(results, mapping))

    values = [wrap(n) for n in _substitute(outputs, mapping)]
    return tree.unflatten(values), vjp_fn


def _vjp_compiled(fn, primals, names):
    from .api import compile

    arrays = _as_arrays(primals)
    value = compile(_with_parameters(_traceable(fn), names, _name(fn)))(*arrays)
    out_leaves, tree = flatten_outputs(value)
    out_leaves = [np.asarray(v) for v in out_leaves]
    kernels = {}  # which cotangents are given (not None) -> the compiled pullback

    def pullback_kernel(given):
        bar_names = _fresh_names(
            ["ct" if len(out_leaves) == 1 else f"ct{k}" for k in given], names)

        def body(*args):
            args_bars = [None] * len(out_leaves)
            for k, bar in zip(given, args[len(arrays):]):
                args_bars[k] = bar
            _, pullback = _vjp_traced(fn, args[: len(arrays)], names)
            return pullback(tree.unflatten(args_bars))

        return compile(_with_parameters(body, names + bar_names, f"vjp_{_name(fn)}"))

    def vjp_fn(cotangent):
        leaves = _cotangent_leaves(cotangent, tree, len(out_leaves))
        bars = [_array_like(c, out, _cotangent_label(k, len(out_leaves)))
                for k, (c, out) in enumerate(zip(leaves, out_leaves))]
        given = tuple(k for k, bar in enumerate(bars) if bar is not None)
        if given not in kernels:
            kernels[given] = pullback_kernel(given)
        return kernels[given](*arrays, *[bars[k] for k in given])

    return value, vjp_fn


# -- Hessian-vector products ----------------------------------------------------------------
def hvp(fn=None, wrt=0):
    """`f -> (lambda *args, v: ∇²f(args)·v)` for a scalar f, without forming ∇²f.

    Forward over reverse: the jvp of the gradient along v, one pass of each mode.
    `wrt` names one parameter (by name or position); v has its shape. The result
    is traceable and compilable (`fg.compile(fg.hvp(f))`); called with NumPy arrays
    it compiles itself and runs.
    """
    if fn is None:
        return functools.partial(hvp, wrt=wrt)
    if isinstance(wrt, (tuple, list)):
        raise FusegradError("hvp: wrt names one parameter (flatten several into one array)")
    (position,), _ = resolve_wrt(fn, wrt)
    names = parameter_names(fn)
    (v_name,) = _fresh_names(["v"], names)
    gradient = grad(fn, wrt=position)
    compiled = []  # hvp_fn compiled on its first call with NumPy arrays

    def hvp_fn(*args):
        if len(args) != len(names) + 1:
            raise TypeError(f"hvp of {_name(fn)} takes {len(names) + 1} arguments "
                            f"({', '.join(names + [v_name])}), got {len(args)}")
        *primals, v = args
        label = f"fg.hvp: {v_name} (a direction for {names[position]!r})"
        if not _is_traced(args):
            from .api import compile

            arrays = _as_arrays(args)
            _array_like(v, arrays[position], label)
            if not compiled:
                compiled.append(compile(hvp_fn))
            return compiled[0](*arrays)

        def gradient_at(x):
            return gradient(*primals[:position], x, *primals[position + 1:])

        x = _traced_primal(primals[position], f"fg.hvp: argument {names[position]!r}")
        dot = _traced_like(v, x, label)
        return _jvp_traced(gradient_at, (primals[position],), (wrap(dot),), [names[position]])[1]

    hvp_fn.__name__ = hvp_fn.__qualname__ = f"hvp_{_name(fn)}"
    hvp_fn.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names + [v_name]])
    return hvp_fn


# -- checking a gradient ----------------------------------------------------------------------
def check_grad(fn, *args, wrt=0, directions: int = 4, seed: int = 0) -> float:
    """The largest relative error of f's compiled gradient against central finite
    differences, over a few random directions.

    For each random direction d (normalized to max |d| = 1) it compares the slope
    that the gradient predicts, ∇f·Δ, with the change f(x + hd) − f(x − hd), where
    Δ is the step actually taken (x ± hd rounded to x's dtype) and
    h = ∛eps · max(1, max |x|) balances truncation against rounding. The error
    of one direction is |∇f·Δ − (f₊ − f₋)| / max(|∇f·Δ|, |f₊ − f₋|, 2h·√eps·(1 + |f(x)|)):
    the last term keeps a direction along which f is flat from counting as an error.

    Reading the result: the finite difference itself is only accurate to about
    eps^(2/3) relative, so in float64 a correct gradient gives about 1e-12 to 1e-8
    (anything below 1e-6 passes), and in float32 about 1e-4 to 1e-3 (up to 1e-2 for
    badly scaled functions). A wrong gradient gives errors of order 0.1 to 1. Near a
    kink (abs, relu, maximum at a tie) f is not differentiable and the check says
    nothing. `wrt` names the parameter(s) as in `compile_grad`; a tuple perturbs
    them together. f must return a scalar.
    """
    from .api import compile, compile_grad

    positions, _ = resolve_wrt(fn, wrt)
    if directions < 1:
        raise FusegradError(f"check_grad: directions must be at least 1, got {directions}")
    names = parameter_names(_traceable(fn))
    arrays = _as_arrays(args)
    for k in positions:
        if arrays[k].dtype.kind != "f":
            raise DTypeError(f"check_grad: argument {names[k]!r} has dtype {arrays[k].dtype}; "
                             "only float arguments can be differentiated")
    value_and_gradient = compile_grad(_traceable(fn), wrt=tuple(positions))
    function = compile(_traceable(fn))
    value, gradients = value_and_gradient(*arrays)
    if np.ndim(value) != 0:
        raise FusegradError(f"check_grad: {_name(fn)} must return a scalar")
    eps = max(float(np.finfo(arrays[k].dtype).eps) for k in positions)
    largest = max(float(np.max(np.abs(arrays[k]), initial=0.0)) for k in positions)
    h = np.cbrt(eps) * max(1.0, largest)
    floor = 2 * h * np.sqrt(eps) * (1.0 + abs(float(value)))
    rng = np.random.default_rng(seed)
    errors = []
    for _ in range(directions):
        steps = [rng.standard_normal(arrays[k].shape) for k in positions]
        norm = max((float(np.max(np.abs(d), initial=0.0)) for d in steps), default=0.0) or 1.0
        plus, minus = list(arrays), list(arrays)
        slope = 0.0
        for k, d, g in zip(positions, steps, gradients):
            x = arrays[k]
            plus[k] = (x + h * d / norm).astype(x.dtype)
            minus[k] = (x - h * d / norm).astype(x.dtype)
            taken = plus[k].astype(np.float64) - minus[k].astype(np.float64)
            slope += float(np.sum(np.asarray(g, np.float64) * taken))
        change = float(function(*plus)) - float(function(*minus))
        errors.append(abs(slope - change) / max(abs(slope), abs(change), floor))
    return float(np.max(errors))  # NaN (a NaN gradient or value) stays NaN
