"""The caches that make tracing fast give the answers the uncached code gave."""

from fusegrad.compiler import shapes, symbolic
from fusegrad.compiler.symbolic import Dim


def uncached_canonical(dim, mapping):
    previous = None
    while previous != dim:
        previous = dim
        dim = symbolic.substitute(dim, mapping)
    return dim


def test_canonical_forms_follow_every_new_equality():
    n, m, k = Dim.symbol("n"), Dim.symbol("m"), Dim.symbol("k")
    unifier = shapes.DimUnifier(named=set())
    dims = [n, m, k, n * m + k, 2 * n - 1]
    with unifier:
        unifier.unify(n, 5, "first")
        assert [unifier.canonical(d) for d in dims] == [
            uncached_canonical(d, unifier.mapping) for d in dims
        ]
        unifier.unify(m, k, "second")  # canonical forms remembered so far are stale now
        unifier.unify(k, n, "third")
        assert [unifier.canonical(d) for d in dims] == [
            uncached_canonical(d, unifier.mapping) for d in dims
        ]
        assert unifier.canonical(n * m + k) == 30


def test_a_dims_text_is_its_polynomial():
    n = Dim.symbol("n")
    dim = 3 * n * n - n + 2
    assert repr(dim) == repr(dim) == "2 - n + 3*n*n"
