"""Dim equality while tracing, and NumPy broadcasting over symbolic dims.

A function is traced once per *specialization*: its arguments' dtypes, ranks and
which of their dims are 1. Every other input dim starts as its own symbol. When
an operation needs two dims to be equal (`X @ w`, `y * z`), the active
`DimUnifier` records that they are: a symbol is replaced by the other dim, and
the runtime later checks the equality against the real sizes, naming the
operation that required it. Dims named by the user (`fg.f64["n"]`) are never
merged with a different name: that is a trace-time `ShapeError`.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
from dataclasses import dataclass

import numpy as np

from . import symbolic
from .errors import ShapeError
from .symbolic import Dim, DimLike, format_dim

_active: contextvars.ContextVar["DimUnifier | None"] = contextvars.ContextVar(
    "fusegrad_dim_unifier", default=None
)
_scopes = itertools.count(1)  # node-table scopes of traces; 0 is the process-wide one


@dataclass
class Constraint:
    left: DimLike
    right: DimLike
    where: str
    kind: str = "eq"  # "eq": left == right; "ge": left >= right


class DimUnifier:
    def __init__(self, named: set[str]):
        self.named = named  # symbols the user named in annotations
        self.mapping: dict[str, DimLike] = {}
        self.constraints: list[Constraint] = []
        self.reasons: dict[str, str] = {}
        # Canonical forms found since the mapping last grew: tracing asks for the same few
        # dims thousands of times, and each answer costs substitutions to a fixed point.
        self._canonical: dict[Dim, DimLike] = {}
        # The nodes built under this unifier are its own (`ir.make` keys them by scope):
        # a node found in another trace would skip its shape rule, and with it the dims
        # that rule merges or checks in this one.
        self.scope = next(_scopes)

    @contextlib.contextmanager
    def shared_nodes(self):
        """Build into the process-wide node table (scope 0) meanwhile: for graphs whose
        dims are all canonical, whose shape rules already ran under this unifier."""
        scope, self.scope = self.scope, 0
        try:
            yield self
        finally:
            self.scope = scope

    def canonical(self, dim: DimLike) -> DimLike:
        if isinstance(dim, int) or not self.mapping:
            return dim
        result = self._canonical.get(dim)
        if result is None:
            result = self._substitute_to_fixed_point(dim)
            self._canonical[dim] = result
        return result

    def _substitute_to_fixed_point(self, dim: Dim) -> DimLike:
        previous = None
        while previous != dim:
            previous = dim
            dim = symbolic.substitute(dim, self.mapping)
        return dim

    def unify(self, a: DimLike, b: DimLike, where: str) -> DimLike:
        a, b = self.canonical(a), self.canonical(b)
        if symbolic.dims_equal(a, b):
            return a
        if isinstance(a, int) and isinstance(b, int):
            raise ShapeError(f"{where}: dims {a} and {b} do not match")
        for free, other in ((b, a), (a, b)):
            if isinstance(free, Dim) and free.is_symbol and free.name not in self.named:
                if free.name in symbolic.as_dim(other).symbols():
                    break
                self.mapping[free.name] = other
                self.reasons[free.name] = where
                self._canonical.clear()
                return other
        both_named = all(
            isinstance(d, Dim) and d.is_symbol and d.name in self.named for d in (a, b)
        )
        if both_named:
            raise ShapeError(
                f"{where}: dim {format_dim(a)!r} does not match dim {format_dim(b)!r} "
                "(they are named differently in the annotations)"
            )
        self.constraints.append(Constraint(a, b, where))
        return a

    def state(self) -> str:
        """What the unifier holds, as text that is the same in every process: the named
        dims, each merge and each run-time check (graphs built under equal states are
        equal; the derivative cache's keys include it)."""
        return repr((
            sorted(self.named),
            sorted((symbol, format_dim(dim)) for symbol, dim in self.mapping.items()),
            [(c.kind, format_dim(c.left), format_dim(c.right), c.where) for c in self.constraints],
        ))

    def __enter__(self):
        self._token = _active.set(self)
        return self

    def __exit__(self, *exc):
        _active.reset(self._token)


def node_scope() -> int:
    """The node-table scope of the active trace (`DimUnifier.scope`), 0 outside one."""
    unifier = _active.get()
    return unifier.scope if unifier is not None else 0


def unifier_state() -> str:
    """The active unifier's `state()`, or "" outside a trace."""
    unifier = _active.get()
    return unifier.state() if unifier is not None else ""


def canonical(dim: DimLike) -> DimLike:
    unifier = _active.get()
    return unifier.canonical(dim) if unifier else dim


def require_equal(a: DimLike, b: DimLike, where: str) -> DimLike:
    """The dim that `a` and `b` both are; unified while tracing, else checked."""
    unifier = _active.get()
    if unifier is not None:
        return unifier.unify(a, b, where)
    if not symbolic.dims_equal(a, b):
        raise ShapeError(f"{where}: dims {format_dim(a)} and {format_dim(b)} do not match")
    return a


def require_at_least(a: DimLike, b: DimLike, where: str) -> None:
    """Record that `a >= b` must hold (checked now if both are known, else at run time)."""
    a, b = canonical(a), canonical(b)
    difference = symbolic.simplify(symbolic.as_dim(a) - symbolic.as_dim(b))
    if isinstance(difference, int):
        if difference < 0:
            raise ShapeError(where)
        return
    unifier = _active.get()
    if unifier is not None:
        unifier.constraints.append(Constraint(a, b, where, kind="ge"))


def is_one(dim: DimLike) -> bool:
    return canonical(dim) == 1


def broadcast_shapes(shapes, where: str) -> tuple:
    """NumPy's broadcast of several shapes (right-aligned; a dim of 1 stretches)."""
    ndim = max((len(s) for s in shapes), default=0)
    result = []
    for axis in range(ndim):
        dim: DimLike = 1
        for shape in shapes:
            offset = axis - (ndim - len(shape))
            if offset < 0:
                continue
            d = canonical(shape[offset])
            if d == 1:
                continue
            dim = d if dim == 1 else require_equal(dim, d, where)
        result.append(dim)
    return tuple(result)


def normalize_axes(axis, ndim: int, where: str) -> tuple[int, ...]:
    """`axis` (None, int or tuple) as sorted non-negative axes, NumPy's rules."""
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    result = []
    for a in axes:
        if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)):
            raise ShapeError(f"{where}: axis must be an int or a tuple of ints, got {a!r}")
        a = int(a)
        if not -ndim <= a < ndim:
            raise ShapeError(f"{where}: axis {a} is out of bounds for an array of ndim {ndim}")
        a = a % ndim if ndim else a
        if a in result:
            raise ShapeError(f"{where}: repeated axis {a}")
        result.append(a)
    return tuple(sorted(result))
