"""Binding dims to the sizes of real arguments, with errors that name them."""

from __future__ import annotations

from . import symbolic
from .errors import ShapeError
from .ir import Function


def bind_dims(function: Function, arg_shapes) -> dict[str, int]:
    """Sizes of the function's dim symbols, from the arguments' shapes.

    Each free symbol takes its value where it first appears; every other dim
    (a repeated symbol, an expression, a known size) and every `DimCheck` is then
    verified, so a mismatch names both arguments and the operation that joined them.
    """
    values: dict[str, int] = {}
    where: dict[str, str] = {}
    for param, shape in zip(function.params, arg_shapes):
        if len(shape) != param.node.ndim:
            raise ShapeError(
                f"argument {param.name!r} must be {param.node.ndim}-D "
                f"(traced with shape {symbolic.format_shape(param.node.shape)}), "
                f"got shape {tuple(shape)}"
            )
        for axis, dim in enumerate(param.node.shape):
            if isinstance(dim, symbolic.Dim) and dim.is_symbol and dim.name not in values:
                values[dim.name] = int(shape[axis])
                where[dim.name] = f"dim {axis} of {param.name!r}"
    for param, shape in zip(function.params, arg_shapes):
        for axis, dim in enumerate(param.node.shape):
            expected = symbolic.evaluate(dim, values)
            if int(shape[axis]) != expected:
                origin = ""
                if isinstance(dim, symbolic.Dim) and dim.is_symbol:
                    origin = f" = {where[dim.name]}"
                raise ShapeError(
                    f"argument {param.name!r} has shape {tuple(shape)}: dim {axis} is "
                    f"{shape[axis]}, expected {symbolic.format_dim(dim)}{origin} = {expected}"
                    + _reason(function, dim)
                )
    for check in function.checks:
        left = symbolic.evaluate(check.left, values)
        right = symbolic.evaluate(check.right, values)
        ok = left == right if check.kind == "eq" else left >= right
        if not ok:
            relation = "==" if check.kind == "eq" else ">="
            raise ShapeError(
                f"{check.where} (needs {symbolic.format_dim(check.left)} {relation} "
                f"{symbolic.format_dim(check.right)}, got {left} and {right}; "
                f"dims: {_format_values(values, where)})"
            )
    return values


def _reason(function, dim) -> str:
    for target, why in function.dim_reasons:
        if symbolic.dims_equal(target, dim):
            return f" (required by {why})"
    return ""


def _format_values(values, where) -> str:
    return ", ".join(f"{name}={value} ({where[name]})" for name, value in values.items())
