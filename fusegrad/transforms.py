"""Composable transforms on traceable functions: `grad`, `value_and_grad`.

A transform returns a new traceable function. Called inside a trace (with
symbolic arrays) it extends the graph: the gradient is built by the reverse-mode
graph transform (`compiler.autodiff`), so transforms nest (a gradient of a
gradient). Called with NumPy arrays it compiles itself and runs.
"""

from __future__ import annotations

import functools
import inspect

from .compiler import autodiff
from .compiler.errors import FusegradError, TraceError
from .compiler.tracer import Tracer, wrap


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
