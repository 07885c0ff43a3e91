"""The Python side of a kernel call, generated per kernel as straight-line code.

A call must bind dims, check shapes, allocate outputs and make one cffi call,
with as little Python in between as possible. Interpreting the shape rules on
every call costs tens of microseconds, so each kernel gets a small function
written for its own parameters, e.g. for `loss(w, X, y)`:

    def call(w, X, y):
        if w.dtype is not D0 or not w.flags.c_contiguous: w = ascontiguousarray(w, D0)
        ...
        s0 = w.shape; s1 = X.shape; s2 = y.shape
        if len(s0) != 1 or len(s1) != 2 or len(s2) != 1: mismatch(...)
        X_1 = s0[0]; y_0 = s1[0]
        if s1[1] != X_1 or s2[0] != y_0: mismatch(...)
        out0 = empty((), D3); out1 = empty((X_1,), D4)
        status = entry(X_1, y_0, from_buffer(T0, w), ..., from_buffer(T4, out1))
        ...

Any failed check falls back to `bind_dims`, which raises the descriptive error.

`native_binder(kernel, packed_address)` builds the same call in C (csrc/fusegrad_binder.c,
about 0.3 µs instead of 4) for the arguments the specialization was traced for: exact
ndarrays of the parameters' dtypes, ranks and size-1 axes, C-contiguous; any other
arguments get NotImplemented from it and go through this caller. Kernels keep only
this caller when
  - a parameter or output dim is an expression (`2*n`, `n - 1`, `n // 2`, ...),
  - a run-time dim check (`function.checks`) compares an expression,
  - an entry-point dim is not some parameter's axis, or
  - the kernel exceeds the binder's limits (ranks, number of dims or buffers).
"""

from __future__ import annotations

import numpy as np

from ..compiler.binding import bind_dims
from ..compiler.symbolic import Dim
from . import _binder
from .native import symbol_addresses


def python_dim(dim, names: dict[str, str]) -> str:
    """A Python expression for a dim, in terms of the local variables in `names`."""
    if isinstance(dim, int):
        return str(dim)
    terms = []
    for monomial, coeff in dim.terms:
        factors = [_python_atom(atom, names) for atom in monomial]
        if coeff != 1 or not factors:
            factors.insert(0, str(coeff))
        terms.append("*".join(factors))
    if len(terms) == 1:
        return terms[0]
    return "(" + " + ".join(terms) + ")" if terms else "0"


def _python_atom(atom, names) -> str:
    if atom.kind == "sym":
        return names[atom.args[0]]
    args = [python_dim(a, names) if isinstance(a, Dim) else str(a) for a in atom.args]
    if atom.kind == "floordiv":
        return f"({args[0]} // {args[1]})"
    return f"{atom.kind}({args[0]}, {args[1]})"


def _python_tree(structure, leaves) -> str:
    """The expression that builds the function's result (nested tuples of outputs)."""
    if isinstance(structure, int):
        return leaves[structure]
    inner = ", ".join(_python_tree(s, leaves) for s in structure)
    return f"({inner},)" if len(structure) == 1 else f"({inner})"


def make_caller(kernel) -> callable:
    """Straight-line `call(*arrays)` for a kernel (see the module doc)."""
    function, program = kernel.function, kernel.program
    params = [f"a{k}" for k in range(len(function.params))]
    names = {name: f"d_{k}" for k, name in enumerate(function.dim_symbols())}
    env = {
        "ascontiguousarray": lambda a, dtype: np.asarray(a, dtype, order="C"), "empty": np.empty, "max": max, "min": min,
        "from_buffer": kernel.ffi.from_buffer, "entry": kernel.entry,
        "mismatch": lambda arrays: bind_dims(function, [a.shape for a in arrays]),
        "fail": kernel.fail,
    }
    lines = [f"def call({', '.join(params)}):"]
    for k, (param, name) in enumerate(zip(function.params, params)):
        env[f"D{k}"] = np.dtype(param.node.dtype)
        lines.append(
            f"    if {name}.dtype is not D{k} or not {name}.flags.c_contiguous: "
            f"{name} = ascontiguousarray({name}, D{k})"
        )
    arrays = f"({', '.join(params)},)"
    lines.append(f"    shapes = {', '.join(f'{p}.shape' for p in params)}," if params else "    shapes = ()")
    ranks = [f"len(shapes[{k}]) != {p.node.ndim}" for k, p in enumerate(function.params)]
    if ranks:
        lines.append(f"    if {' or '.join(ranks)}: mismatch({arrays})")
    bound, checks = set(), []
    for k, param in enumerate(function.params):
        for axis, dim in enumerate(param.node.shape):
            if isinstance(dim, Dim) and dim.is_symbol and dim.name not in bound:
                bound.add(dim.name)
                lines.append(f"    {names[dim.name]} = shapes[{k}][{axis}]")
            else:
                checks.append(f"shapes[{k}][{axis}] != {python_dim(dim, names)}")
    for check in function.checks:
        relation = "!=" if check.kind == "eq" else "<"
        checks.append(f"{python_dim(check.left, names)} {relation} {python_dim(check.right, names)}")
    if checks:
        lines.append(f"    if {' or '.join(checks)}: mismatch({arrays})")
    outputs = []
    for k, node in enumerate(function.outputs):
        env[f"O{k}"] = np.dtype(node.dtype)
        shape = ", ".join(python_dim(d, names) for d in node.shape)
        lines.append(f"    o{k} = empty(({shape}{',' if len(node.shape) == 1 else ''}), O{k})")
        outputs.append(f"o{k}")
    buffers = params + outputs
    for k, buffer in enumerate(program.inputs + program.outputs):
        env[f"T{k}"] = kernel.c_array_types[buffer.dtype]
    args = [names[d] for d in program.dims] + [
        f"from_buffer(T{k}, {b})" for k, b in enumerate(buffers)
    ]
    lines.append(f"    status = entry({', '.join(args)})")
    lines.append("    if status: fail(status)")
    results = [f"o{k}[()]" if not node.shape else f"o{k}" for k, node in enumerate(function.outputs)]
    lines.append(f"    return {_python_tree(kernel.tree.structure, results)}")
    source = "\n".join(lines)
    exec(compile(source, f"<fusegrad call {function.name}>", "exec"), env)  # noqa: S102
    caller = env["call"]
    caller.source = source
    return caller


def native_binder(kernel, packed_address: int):
    """The C binder of a kernel (see the module doc), or None where it does not fit."""
    layout = native_layout(kernel.function, kernel.program)
    if layout is None:
        return None
    params, outputs, checks, entry_dims = layout
    structure = kernel.tree.structure
    runtime = symbol_addresses()  # large outputs come from fg_alloc (its block cache)
    return _binder.Binder(
        packed_address, params, outputs, checks, entry_dims, structure, kernel.fail, kernel.jit,
        alloc_address=runtime["fg_alloc"], free_address=runtime["fg_free"],
    )


def native_layout(function, program):
    """`(params, outputs, checks, entry_dims)` for `_binder.Binder`, or None.

    Each parameter and output is `(dtype number, axes)`, one `(kind, value)` per axis:
    `(AXIS_BIND, slot)` at a dim's first appearance, `(AXIS_SAME, slot)` after it,
    `(AXIS_CONST, size)` for a known size. A check is `(CHECK_EQ or CHECK_GE, left,
    right)` with sides `(AXIS_SAME, slot)` or `(AXIS_CONST, size)`. `entry_dims` gives
    the slot of each of `program.dims`.
    """
    if len(program.inputs) != len(function.params) or len(program.outputs) != len(function.outputs):
        return None
    if len(function.params) + len(function.outputs) > _binder.MAX_BUFFERS:
        return None
    if len(function.checks) > _binder.MAX_CHECKS:
        return None
    slots: dict[str, int] = {}

    def axis(dim, binds: bool):
        if isinstance(dim, Dim) and dim.is_const:
            dim = dim.const_value
        if isinstance(dim, int):
            return (_binder.AXIS_CONST, dim) if dim >= 0 else None
        if not dim.is_symbol:
            return None
        if dim.name in slots:
            return (_binder.AXIS_SAME, slots[dim.name])
        if not binds or len(slots) == _binder.MAX_SLOTS:
            return None
        slots[dim.name] = len(slots)
        return (_binder.AXIS_BIND, slots[dim.name])

    def describe(nodes, buffers, binds: bool):
        described = []
        for node, buffer in zip(nodes, buffers):
            if buffer.dtype != node.dtype or len(node.shape) > _binder.MAX_RANK:
                return None
            axes = tuple(axis(dim, binds) for dim in node.shape)
            if None in axes:
                return None
            described.append((np.dtype(node.dtype).num, axes))
        return tuple(described)

    params = describe([p.node for p in function.params], program.inputs, binds=True)
    outputs = describe(function.outputs, program.outputs, binds=False)
    relations = {"eq": _binder.CHECK_EQ, "ge": _binder.CHECK_GE}
    checks = tuple(
        (relations.get(c.kind), axis(c.left, False), axis(c.right, False)) for c in function.checks
    )
    if params is None or outputs is None or any(None in check for check in checks):
        return None
    if any(d not in slots for d in program.dims) or len(program.dims) > _binder.MAX_SLOTS:
        return None
    return params, outputs, checks, tuple(slots[d] for d in program.dims)
