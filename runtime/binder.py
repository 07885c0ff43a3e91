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
"""

from __future__ import annotations

import numpy as np

from ..compiler.binding import bind_dims
from ..compiler.symbolic import Dim


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

