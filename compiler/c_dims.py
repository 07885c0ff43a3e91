"""Dims as C expressions: what every C-family emitter (the AOT wrapper, the CUDA launcher,
the CUDA C renderer) writes for a symbolic dim.

    c_dim(n * m + (n + 63) // 64, {"n": "n", "m": "m"})
        -> "(n * m + dim_floordiv((INT64_C(63) + n), INT64_C(64)))"

`floordiv`, `max` and `min` atoms become calls of `dim_floordiv`, `dim_max` and
`dim_min`, which `dim_helpers` defines with the storage class and integer type the
emitter needs (`static inline` and `int64_t` in C, `__device__` functions on `long long`
in CUDA C, where `<stdint.h>` is not available to NVRTC).
"""

from __future__ import annotations

from .symbolic import Dim

INT64_LITERAL = "INT64_C({})"  # <stdint.h>
LONG_LONG_LITERAL = "{}LL"  # CUDA C compiled by NVRTC, which has no <stdint.h>


def c_dim(dim, names, literal: str = INT64_LITERAL) -> str:
    """A 64-bit integer C expression of `dim`; `names` maps each symbol to its C name."""
    if isinstance(dim, int):
        return literal.format(dim)
    terms = []
    for monomial, coeff in dim.terms:
        factors = [_c_atom(atom, names, literal) for atom in monomial]
        if coeff != 1 or not factors:
            factors.insert(0, literal.format(coeff))
        terms.append(" * ".join(factors))
    if not terms:
        return literal.format(0)
    return terms[0] if len(terms) == 1 else "(" + " + ".join(terms) + ")"


def _c_atom(atom, names, literal) -> str:
    if atom.kind == "sym":
        return names[atom.args[0]]
    args = [c_dim(a, names, literal) if isinstance(a, Dim) else literal.format(a)
            for a in atom.args]
    return f"dim_{atom.kind}({args[0]}, {args[1]})"  # floordiv, max, min: see dim_helpers


def dim_helpers(qualifier: str = "static inline", integer: str = "int64_t") -> str:
    """C definitions of the helpers `c_dim` calls: Python's floor division (rounds
    towards −∞, where C's `/` truncates) and max/min."""
    return f"""\
{qualifier} {integer} dim_floordiv({integer} a, {integer} b)
{{
    {integer} q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}}

{qualifier} {integer} dim_max({integer} a, {integer} b)
{{
    return a > b ? a : b;
}}

{qualifier} {integer} dim_min({integer} a, {integer} b)
{{
    return a < b ? a : b;
}}
"""
