"""Batched transforms: `vmap`, `jacobian`, `hessian`, `compile_hessian`.

Like `grad`, each returns a traceable function: called inside a trace it extends
the graph, called with NumPy arrays it compiles itself and runs. Jacobians and
Hessians are batches over a basis: the derivative of a function along every
basis direction at once, which batching (`compiler.batching`) turns into matrix
products. With the identity basis the products with it vanish (I·A = A), so the
Hessian of the logistic loss is computed as Xᵀ diag(s) X, one product, not n
separate Hessian-vector products.
"""

from __future__ import annotations

import functools
import inspect
import itertools

from .compiler import autodiff, forward, shapes, symbolic
from .compiler import build as B
from .compiler.batching import batch, move_axis, with_batch_axis
from .compiler.errors import FusegradError, TraceError
from .compiler.ir import Node, make
from .compiler.simplify import simplify_nodes
from .compiler.trace import flatten_outputs
from .compiler.tracer import Tracer, to_node, wrap
from .derivative_cache import derived
from .transforms import _name, parameter_names, resolve_wrt

_placeholder_ids = itertools.count()


def _compile_and_call(fn, args):
    from .api import compile

    return compile(fn)(*args)


def _placeholder(dtype: str, shape) -> Node:
    """A stand-in param for one example of a batched value (never left in a graph)."""
    return make("param", name=f"__batched{next(_placeholder_ids)}", index=-1, dtype=dtype,
                shape=tuple(shape))


def _axes(spec, count: int, what: str) -> tuple:
    if spec is None or isinstance(spec, int):
        return (spec,) * count
    spec = tuple(spec)
    if len(spec) != count:
        raise FusegradError(f"vmap: {what} has {len(spec)} entries for {count} values")
    for axis in spec:
        if axis is not None and (not isinstance(axis, int) or isinstance(axis, bool)):
            raise FusegradError(f"vmap: {what} entries must be ints or None, got {axis!r}")
    return spec


def _normalized_axis(axis: int, ndim: int, what: str) -> int:
    if not -ndim <= axis < ndim:
        raise FusegradError(f"vmap: {what} is {axis}, but the value has {ndim} axes")
    return axis % ndim


# -- vmap ---------------------------------------------------------------------------------------
def vmap(fn, in_axes=0, out_axes=0):
    """`f` mapped over an axis of its arguments: `vmap(f)(xs)[i] = f(xs[i])`.

    `in_axes`: the batch axis of each argument (an int for all, or one entry per
    argument; None for an argument shared by every example). `out_axes`: where the
    batch axis goes in each output (an int, or one per output leaf). The function is
    traced once, for one example, and the batched graph computes all examples in the
    same loops (a matrix–vector product over a batch of vectors is one
    matrix–matrix product)."""

    @functools.wraps(fn)
    def vmapped(*args):
        if not any(isinstance(a, Tracer) for a in args):
            return _compile_and_call(vmapped, args)
        axes = _axes(in_axes, len(args), "in_axes")
        size, placeholders, example_args = None, {}, []
        for k, (arg, axis) in enumerate(zip(args, axes)):
            if axis is None:
                example_args.append(arg)
                continue
            if not isinstance(arg, Tracer):
                raise FusegradError(
                    f"vmap: argument {k} is a Python number; give it in_axes None or pass an array")
            node = arg.node
            axis = _normalized_axis(axis, node.ndim, f"in_axes for argument {k}")
            moved = move_axis(node, axis, 0)
            where = f"vmap: argument {k}'s batch axis (axis {axis}) differs from an earlier one"
            size = moved.shape[0] if size is None else shapes.require_equal(
                size, moved.shape[0], where)
            placeholder = _placeholder(node.dtype, moved.shape[1:])
            placeholders[placeholder.id] = moved
            example_args.append(Tracer(placeholder))
        if size is None:
            raise FusegradError("vmap: in_axes maps no argument (all are None)")
        leaves, tree = flatten_outputs(fn(*example_args))
        nodes = [_as_node(leaf, fn) for leaf in leaves]
        results = batch(nodes, placeholders, size)
        out = _axes(out_axes, len(results), "out_axes")
        mapped = []
        for (node, is_batched), axis in zip(results, out):
            if axis is None:
                if is_batched:
                    raise FusegradError("vmap: out_axes None for an output that depends on "
                                        "the mapped arguments")
                mapped.append(wrap(node))
                continue
            node = node if is_batched else with_batch_axis(node, size)
            mapped.append(wrap(move_axis(node, 0, _normalized_axis(axis, node.ndim, "out_axes"))))
        return tree.unflatten(mapped)

    vmapped.__signature__ = inspect.signature(fn)
    return vmapped


def _as_node(value, fn) -> Node:
    node = to_node(value)
    if isinstance(node, Node):
        return node
    if isinstance(node, symbolic.Dim):
        return B.dim_value(node)
    if isinstance(node, (bool, int, float)):
        return B.constant(node, "bool" if isinstance(node, bool) else "float64")
    raise TraceError(f"{getattr(fn, '__name__', fn)} returned {type(value).__name__}, not arrays")


# -- Jacobians and Hessians ---------------------------------------------------------------------
def _basis(shape, dtype: str) -> tuple[Node, object]:
    """(the identity basis of arrays of `shape`: one basis array per row, the count)."""
    count = symbolic.simplify(symbolic.product(shape))
    return B.reshape(B.eye(count, dtype), (count,) + tuple(shape)), count


def _reverse_jacobian(out: Node, x: Node) -> Node:
    """∂out/∂x, shape out.shape + x.shape: row r is the vjp of basis cotangent e_r."""
    basis, count = _basis(out.shape, out.dtype)
    cotangent = _placeholder(out.dtype, out.shape)
    (rows,) = autodiff.vjp([out], [cotangent], [x])
    if rows is None:
        return B.zeros(tuple(out.shape) + tuple(x.shape), x.dtype)
    ((batched, is_batched),) = batch([B.cast(rows, x.dtype)], {cotangent.id: basis}, count)
    if not is_batched:
        batched = with_batch_axis(batched, count)
    return B.reshape(batched, tuple(out.shape) + tuple(x.shape))


def _forward_jacobian(out: Node, x: Node, symmetric: bool = False) -> Node:
    """∂out/∂x, shape out.shape + x.shape: column c is the jvp along basis tangent e_c.
    `symmetric`: the Jacobian is known to equal its transpose (a Hessian: the Jacobian
    of a gradient), so the batch of columns is returned as it is, as rows."""
    basis, count = _basis(x.shape, x.dtype)
    tangent = _placeholder(x.dtype, x.shape)
    (columns,) = forward.jvp([out], [x], [tangent])
    if columns is None:
        return B.zeros(tuple(out.shape) + tuple(x.shape), out.dtype)
    ((batched, is_batched),) = batch([B.cast(columns, out.dtype)], {tangent.id: basis}, count)
    if not is_batched:
        batched = with_batch_axis(batched, count)
    if symmetric:
        return B.reshape(batched, tuple(out.shape) + tuple(x.shape))
    # batched[c, o...] = ∂out[o...]/∂x_c: put the output axes first
    moved = B.transpose(batched, tuple(range(1, batched.ndim)) + (0,))
    return B.reshape(moved, tuple(out.shape) + tuple(x.shape))


def _jacobian_node(out: Node, x: Node, mode: str) -> Node:
    if mode == "auto":
        n_out = symbolic.simplify(symbolic.product(out.shape))
        n_in = symbolic.simplify(symbolic.product(x.shape))
        if isinstance(n_out, int) and isinstance(n_in, int):
            mode = "reverse" if n_out <= n_in else "forward"
        else:
            mode = "reverse" if out.ndim <= x.ndim else "forward"
    if mode == "forward":
        return _forward_jacobian(out, x)
    if mode not in ("forward", "reverse"):
        raise FusegradError(f"jacobian: mode must be 'auto', 'forward' or 'reverse', got {mode!r}")
    return _reverse_jacobian(out, x)


def _targets(args, positions, what: str) -> list[Node]:
    nodes = []
    for k in positions:
        if not isinstance(args[k], Tracer):
            raise TraceError(f"{what}: cannot differentiate with respect to non-array argument {k}")
        nodes.append(args[k].node)
    return nodes


def jacobian(fn=None, wrt=0, mode: str = "auto"):
    """`f -> ∂f/∂x`: an array of shape f(x).shape + x.shape (a tuple of them for a tuple
    `wrt`). `mode`: "reverse" (one vjp per output element, batched), "forward" (one jvp
    per input element, batched) or "auto": whichever needs fewer directions."""
    if fn is None:
        return functools.partial(jacobian, wrt=wrt, mode=mode)
    positions, as_tuple = resolve_wrt(fn, wrt)

    @functools.wraps(fn)
    def jacobian_fn(*args):
        if not any(isinstance(a, Tracer) for a in args):
            return _compile_and_call(jacobian_fn, args)
        out = _as_node(fn(*args), fn)
        jacobians = [wrap(derived(f"jacobian {mode}", [out], [x],
                                  lambda x=x: [_jacobian_node(out, x, mode)])[0])
                     for x in _targets(args, positions, "jacobian")]
        return tuple(jacobians) if as_tuple else jacobians[0]

    jacobian_fn.__signature__ = inspect.signature(fn)
    jacobian_fn.fusegrad_labels = [("jacobian", parameter_names(fn)[k]) for k in positions]
    return jacobian_fn


def _value_grad_hessian(fn, args, position: int):
    """(f, ∇f, ∇²f) nodes of a scalar f at args: the Hessian is the forward-mode
    Jacobian of the gradient (forward over reverse); H is symmetric, so its batch of
    columns is returned as rows."""
    value = _as_node(fn(*args), fn)
    if value.shape != ():
        raise TraceError(f"{getattr(fn, '__name__', fn)} must return a scalar for a Hessian, "
                         f"got shape {symbolic.format_shape(value.shape)}")
    (x,) = _targets(args, (position,), "hessian")
    gradient, hessian = derived("gradient and Hessian", [value], [x],
                                lambda: _gradient_and_hessian(value, x))
    return value, gradient, hessian


def _gradient_and_hessian(value: Node, x: Node) -> list[Node]:
    # Simplified first: the Hessian differentiates σ(u), not the rule-by-rule eᵘ/(eᵘ+1).
    (gradient,) = simplify_nodes(autodiff.grad(value, [x]))
    return [gradient, _forward_jacobian(gradient, x, symmetric=True)]


def hessian(fn=None, wrt=0):
    """`f -> ∇²f` for a scalar f: an array of shape x.shape + x.shape."""
    if fn is None:
        return functools.partial(hessian, wrt=wrt)
    if isinstance(wrt, (tuple, list)):
        raise FusegradError("hessian: wrt names one parameter (flatten several into one array)")
    (position,), _ = resolve_wrt(fn, wrt)

    @functools.wraps(fn)
    def hessian_fn(*args):
        if not any(isinstance(a, Tracer) for a in args):
            return _compile_and_call(hessian_fn, args)
        return wrap(_value_grad_hessian(fn, args, position)[2])

    hessian_fn.__signature__ = inspect.signature(fn)
    hessian_fn.fusegrad_labels = [("hessian", parameter_names(fn)[position])]
    return hessian_fn


def value_grad_hessian(fn=None, wrt=0):
    """`f -> (f, ∇f, ∇²f)`, one graph: the three share the forward work."""
    if fn is None:
        return functools.partial(value_grad_hessian, wrt=wrt)
    (position,), _ = resolve_wrt(fn, wrt)

    @functools.wraps(fn)
    def both_fn(*args):
        if not any(isinstance(a, Tracer) for a in args):
            return _compile_and_call(both_fn, args)
        return tuple(wrap(n) for n in _value_grad_hessian(fn, args, position))

    both_fn.__signature__ = inspect.signature(fn)
    name = parameter_names(fn)[position]
    both_fn.fusegrad_labels = [_name(fn), ("grad", name), ("hessian", name)]
    return both_fn


def compile_hessian(fn=None, *, wrt=0, target: str = "cpu"):
    """Compile `f` into one kernel returning `(value, gradient, hessian)` (Newton's method
    needs all three; they share the forward pass); `target` as in `compile`."""
    if fn is None:
        return functools.partial(compile_hessian, wrt=wrt, target=target)
    if isinstance(wrt, (tuple, list)):
        raise FusegradError("compile_hessian: wrt names one parameter (a Hessian of several "
                            "parameters is a block matrix: flatten them into one array)")
    from .api import compile

    return compile(value_grad_hessian(fn, wrt=wrt), name=getattr(fn, "__name__", None),
                   target=target)
