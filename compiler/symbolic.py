"""Symbolic integer expressions: array dims and loop indices.

A `Dim` is a polynomial with integer coefficients over *atoms*. An atom is a
named symbol (`"n"`, a loop variable `"i0"`) or a non-polynomial function of
other dims: `floordiv(a, k)`, `max(a, b)`, `min(a, b)`. Polynomials are kept in
a canonical form (a sorted tuple of `(monomial, coefficient)`), so structural
equality is algebraic equality for the polynomial part: `(n - 1) + 1 == n`.

Shapes use plain Python ints where a size is known and `Dim` where it is not;
`as_dim` accepts either. The same class serves the loop IR, where index
arithmetic is a polynomial over loop variables and dims.
"""

from __future__ import annotations

import functools
from functools import cached_property
from typing import Mapping, Union

DimLike = Union[int, "Dim"]


class Atom:
    """A leaf of a polynomial: a symbol or a function of dims."""

    __slots__ = ("kind", "args", "_key", "_hash")

    def __init__(self, kind: str, args: tuple):
        self.kind = kind  # "sym", "floordiv", "max", "min"
        self.args = args
        self._key = (kind, tuple(_atom_arg_key(a) for a in args))
        self._hash = hash(self._key)

    def __eq__(self, other):
        return self is other or (isinstance(other, Atom) and self._key == other._key)

    def __hash__(self):
        return self._hash

    def __reduce__(self):
        # Pickled as what it is, not with its hash: a str's hash differs between
        # processes, so a hash unpickled from another one would not match this one's.
        return (Atom, (self.kind, self.args))

    def __lt__(self, other):
        return self._key < other._key

    def __repr__(self):
        if self.kind == "sym":
            return self.args[0]
        if self.kind == "floordiv":
            return f"(({self.args[0]}) // {self.args[1]})"
        return f"{self.kind}({self.args[0]}, {self.args[1]})"


def _atom_arg_key(arg):
    return arg.key if isinstance(arg, Dim) else ("int", arg)


class Dim:
    """An integer polynomial over atoms (see module doc). Immutable."""

    __slots__ = ("terms", "__dict__")

    def __init__(self, terms: Mapping[tuple, int]):
        # terms: monomial (sorted tuple of atoms, repeated for powers) -> coeff
        self.terms = tuple(sorted((m, c) for m, c in terms.items() if c != 0))

    # -- construction -------------------------------------------------------
    @staticmethod
    def symbol(name: str) -> "Dim":
        return _symbol(name)

    @staticmethod
    def const(value: int) -> "Dim":
        return _const(int(value))

    @cached_property
    def key(self):
        return tuple((tuple(a._key for a in m), c) for m, c in self.terms)

    @cached_property
    def _hash(self) -> int:
        return hash(self.key)

    def __hash__(self):
        return self._hash

    def __reduce__(self):
        # The terms only, not the cached key and hash (see Atom.__reduce__).
        return (Dim, (dict(self.terms),))

    def __eq__(self, other):
        if isinstance(other, int):
            return self.is_const and self.const_value == other
        return self is other or (isinstance(other, Dim) and self.key == other.key)

    # -- queries ------------------------------------------------------------
    # The constant monomial () sorts first, and a canonical polynomial has it at most once.
    @property
    def is_const(self) -> bool:
        terms = self.terms
        return not terms or (len(terms) == 1 and terms[0][0] == ())

    @property
    def const_value(self) -> int:
        terms = self.terms
        return terms[0][1] if terms and terms[0][0] == () else 0

    @property
    def is_symbol(self) -> bool:
        return (
            len(self.terms) == 1
            and self.terms[0][1] == 1
            and len(self.terms[0][0]) == 1
            and self.terms[0][0][0].kind == "sym"
        )

    @property
    def name(self) -> str:
        assert self.is_symbol, self
        return self.terms[0][0][0].args[0]

    def symbols(self) -> list[str]:
        """Symbol names in order of first appearance (deterministic)."""
        return list(self._symbols)

    @cached_property
    def _symbols(self) -> tuple[str, ...]:
        found: list[str] = []
        for monomial, _ in self.terms:
            for atom in monomial:
                _collect_symbols(atom, found)
        return tuple(found)

    # -- arithmetic ---------------------------------------------------------
    def __add__(self, other):
        other = as_dim(other)
        terms = dict(self.terms)
        for m, c in other.terms:
            terms[m] = terms.get(m, 0) + c
        return Dim(terms)

    __radd__ = __add__

    def __neg__(self):
        return Dim({m: -c for m, c in self.terms})

    def __sub__(self, other):
        return self + (-as_dim(other))

    def __rsub__(self, other):
        return as_dim(other) - self

    def __mul__(self, other):
        other = as_dim(other)
        terms: dict = {}
        for m1, c1 in self.terms:
            for m2, c2 in other.terms:
                m = tuple(sorted(m1 + m2))
                terms[m] = terms.get(m, 0) + c1 * c2
        return Dim(terms)

    __rmul__ = __mul__

    def __floordiv__(self, k: int):
        if not isinstance(k, int) or k <= 0:
            raise ValueError("dims can only be floor-divided by a positive int")
        if self.is_const:
            return Dim.const(self.const_value // k)
        if k == 1:
            return self
        if all(c % k == 0 for _, c in self.terms):
            return Dim({m: c // k for m, c in self.terms})
        return Dim({(Atom("floordiv", (self, k)),): 1})

    def __repr__(self):
        return self._text

    @cached_property
    def _text(self) -> str:
        # Cached: node digests and shape listings format the same few dims many times.
        if not self.terms:
            return "0"
        parts = []
        for monomial, coeff in self.terms:
            body = "*".join(repr(a) for a in monomial)
            if not body:
                parts.append(str(coeff))
            elif coeff == 1:
                parts.append(body)
            elif coeff == -1:
                parts.append("-" + body)
            else:
                parts.append(f"{coeff}*{body}")
        text = " + ".join(parts)
        return text.replace("+ -", "- ")

    # -- evaluation ---------------------------------------------------------
    def evaluate(self, values: Mapping[str, int]) -> int:
        total = 0
        for monomial, coeff in self.terms:
            product = coeff
            for atom in monomial:
                product *= evaluate_atom(atom, values)
            total += product
        return total

    def substitute(self, mapping: Mapping[str, "DimLike"]) -> "Dim":
        if not any(name in mapping for name in self._symbols):
            return self
        kept: dict = {}  # monomials free of the mapped symbols stay as they are
        replaced = []
        for monomial, coeff in self.terms:
            if any(_atom_mentions(atom, mapping) for atom in monomial):
                product = Dim.const(coeff)
                for atom in monomial:
                    product = product * substitute_atom(atom, mapping)
                replaced.append(product)
            else:
                kept[monomial] = coeff
        result = Dim(kept)
        for product in replaced:
            result = result + product
        return result


@functools.lru_cache(maxsize=1024)
def _symbol(name: str) -> Dim:
    return Dim({(Atom("sym", (name,)),): 1})


@functools.lru_cache(maxsize=1024)
def _const(value: int) -> Dim:
    return Dim({(): value})


def _atom_mentions(atom: Atom, mapping) -> bool:
    if atom.kind == "sym":
        return atom.args[0] in mapping
    return any(
        isinstance(a, Dim) and any(name in mapping for name in a._symbols) for a in atom.args
    )


def _collect_symbols(atom: Atom, found: list[str]):
    if atom.kind == "sym":
        if atom.args[0] not in found:
            found.append(atom.args[0])
        return
    for arg in atom.args:
        if isinstance(arg, Dim):
            for name in arg.symbols():
                if name not in found:
                    found.append(name)


def evaluate_atom(atom: Atom, values: Mapping[str, int]) -> int:
    if atom.kind == "sym":
        return values[atom.args[0]]
    args = [a.evaluate(values) if isinstance(a, Dim) else a for a in atom.args]
    if atom.kind == "floordiv":
        return args[0] // args[1]
    if atom.kind == "max":
        return max(args)
    return min(args)


def substitute_atom(atom: Atom, mapping: Mapping[str, DimLike]) -> Dim:
    if atom.kind == "sym":
        name = atom.args[0]
        return as_dim(mapping[name]) if name in mapping else Dim({(atom,): 1})
    args = [a.substitute(mapping) if isinstance(a, Dim) else a for a in atom.args]
    if atom.kind == "floordiv":
        return args[0] // args[1]
    return dim_max(*args) if atom.kind == "max" else dim_min(*args)


# -- public helpers -----------------------------------------------------------
def as_dim(value: DimLike) -> Dim:
    if isinstance(value, Dim):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an int or a Dim, got {type(value).__name__}")
    return Dim.const(value)


def simplify(value: DimLike) -> DimLike:
    """A Dim that is a constant becomes a plain int."""
    if isinstance(value, Dim) and value.is_const:
        return value.const_value
    return value


def known_nonnegative(value: DimLike) -> bool:
    """True when `value` is ≥ 0 for every non-negative value of its symbols."""
    value = simplify(value)
    if isinstance(value, int):
        return value >= 0
    for monomial, coeff in value.terms:
        if coeff < 0:
            return False
        for atom in monomial:
            if atom.kind == "min" and not all(known_nonnegative(a) for a in atom.args):
                return False
            if atom.kind == "max" and not any(known_nonnegative(a) for a in atom.args):
                return False
            if atom.kind == "floordiv" and not known_nonnegative(atom.args[0]):
                return False
    return True


def dim_max(a: DimLike, b: DimLike) -> DimLike:
    a, b = simplify(a), simplify(b)
    if isinstance(a, int) and isinstance(b, int):
        return max(a, b)
    if b == 0 and known_nonnegative(a):
        return a
    if a == 0 and known_nonnegative(b):
        return b
    if as_dim(a) == as_dim(b):
        return a
    difference = simplify(as_dim(a) - as_dim(b))
    if isinstance(difference, int):
        return a if difference >= 0 else b
    pair = sorted([as_dim(a), as_dim(b)], key=lambda d: d.key)
    return Dim({(Atom("max", tuple(pair)),): 1})


def dim_min(a: DimLike, b: DimLike) -> DimLike:
    a, b = simplify(a), simplify(b)
    if isinstance(a, int) and isinstance(b, int):
        return min(a, b)
    if as_dim(a) == as_dim(b):
        return a
    difference = simplify(as_dim(a) - as_dim(b))
    if isinstance(difference, int):
        return b if difference >= 0 else a
    pair = sorted([as_dim(a), as_dim(b)], key=lambda d: d.key)
    return Dim({(Atom("min", tuple(pair)),): 1})


def dims_equal(a: DimLike, b: DimLike) -> bool:
    return as_dim(a) == as_dim(b)


def product(dims) -> DimLike:
    result: DimLike = 1
    for d in dims:
        result = simplify(as_dim(result) * as_dim(d))
    return result


def dim_symbols(dims) -> list[str]:
    found: list[str] = []
    for d in dims:
        if isinstance(d, Dim):
            for name in d.symbols():
                if name not in found:
                    found.append(name)
    return found


def evaluate(value: DimLike, values: Mapping[str, int]) -> int:
    return value if isinstance(value, int) else value.evaluate(values)


def substitute(value: DimLike, mapping: Mapping[str, DimLike]) -> DimLike:
    return value if isinstance(value, int) else simplify(value.substitute(mapping))


def format_dim(value: DimLike) -> str:
    return str(value) if isinstance(value, int) else repr(value)


def format_shape(shape) -> str:
    inner = ", ".join(format_dim(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"
