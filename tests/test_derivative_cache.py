"""Hessians and Jacobians from the on-disk cache (fusegrad/derivative_cache.py): a graph
derived by another process (with another string-hash seed) comes back as the same graph,
bad entries are derived again, and derivations that cannot be replayed are not stored."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import fusegrad as fg
from fusegrad import derivative_cache
from fusegrad.compiler import shapes, symbolic
from fusegrad.compiler import build as B
from fusegrad.compiler.ir import make
from fusegrad.runtime import cache

FILL = """
import json, sys
import numpy as np
import fusegrad as fg
from fusegrad import derivative_cache
sys.path.insert(0, {tests!r})
import test_derivative_cache as t
print(json.dumps({{"digests": t.digests(), "stats": derivative_cache.stats}}))
"""


def loss(w, X, y):
    return np.sum(np.log1p(np.exp(-y * (X @ w)))) + 0.5 * np.sum(w * w)


def residuals(w, X):
    return np.tanh(X @ w) - 0.25 * w[0]


ARGUMENTS = (np.zeros(3), np.zeros((5, 3)), np.ones(5))


def digests() -> dict:
    """The traced graph of each transform whose derivation is cached."""
    traced = {
        "value, gradient and Hessian": fg.value_grad_hessian(loss),
        "Hessian": fg.hessian(loss),
        "Jacobian (auto)": fg.jacobian(residuals),
        "Jacobian (forward)": fg.jacobian(residuals, mode="forward"),
        "Jacobian (reverse)": fg.jacobian(residuals, mode="reverse"),
    }
    result = {}
    for name, function in traced.items():
        arguments = ARGUMENTS[:2] if name.startswith("Jacobian") else ARGUMENTS
        result[name] = fg.compile(function).trace(*arguments)[0].digest
    return result


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEGRAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("FUSEGRAD_CACHE", "1")
    monkeypatch.setattr(cache, "_broken", None)
    for key in derivative_cache.stats:
        monkeypatch.setitem(derivative_cache.stats, key, 0)
    return tmp_path


def fill_in_another_process(folder) -> dict:
    environment = dict(os.environ, FUSEGRAD_CACHE_DIR=str(folder), PYTHONHASHSEED="12345")
    environment.pop("FUSEGRAD_CACHE", None)
    completed = subprocess.run(
        [sys.executable, "-c", FILL.format(tests=os.path.dirname(__file__))],
        env=environment, capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_graphs_derived_by_another_process_come_back_the_same(folder, monkeypatch):
    filled = fill_in_another_process(folder)
    assert filled["stats"]["stores"] == len(filled["digests"]) - 1  # Hessian: same entry
    loaded = digests()
    assert derivative_cache.stats["hits"] == len(loaded)
    assert derivative_cache.stats["misses"] == derivative_cache.stats["stores"] == 0
    assert loaded == filled["digests"]
    monkeypatch.setenv("FUSEGRAD_CACHE", "0")
    assert digests() == loaded  # derived here, with no cache


def test_a_hessian_from_the_cache_computes_the_same_numbers(folder):
    fill_in_another_process(folder)
    rng = np.random.default_rng(3)
    w, X, y = rng.standard_normal(3), rng.standard_normal((40, 3)), np.sign(rng.standard_normal(40))
    value, gradient, hessian = fg.compile_hessian(loss)(w, X, y)
    assert derivative_cache.stats["hits"] == 1
    s = 1 / (1 + np.exp(y * (X @ w)))  # σ(−y ⊙ Xw)
    np.testing.assert_allclose(gradient, -X.T @ (y * s) + w, rtol=1e-12)
    np.testing.assert_allclose(hessian, X.T @ (X * (s * (1 - s))[:, None]) + np.eye(3), rtol=1e-12)


@pytest.mark.parametrize("damage", ["truncate", "flip a payload byte", "not a graph"])
def test_a_bad_entry_is_derived_again_and_replaced(folder, damage):
    reference = digests()
    (path,) = [p for p in folder.iterdir() if p.suffix == cache.SUFFIX
               and _is_derivative(p)][:1]
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip a payload byte":
        data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    if damage == "not a graph":  # a valid entry whose payload is no graph
        cache.store(path.stem, pickle.dumps("not records"), {"stores": 0})
    for key in derivative_cache.stats:
        derivative_cache.stats[key] = 0
    assert digests() == reference
    assert derivative_cache.stats["bad_entries"] == 1 and derivative_cache.stats["stores"] == 1
    for key in derivative_cache.stats:
        derivative_cache.stats[key] = 0
    assert digests() == reference
    assert derivative_cache.stats["hits"] == len(reference)


def _is_derivative(path) -> bool:
    """Whether the entry holds the gradient-and-Hessian graph (ir.to_records' tuple of
    records and two outputs), not a kernel's (program signature, object files)."""
    payload = cache.load(path.stem, {"hits": 0, "misses": 0, "bad_entries": 0})
    records, outputs = pickle.loads(payload)
    return isinstance(records, tuple) and len(outputs) == 2


def test_a_derivation_that_merges_dims_is_not_stored(folder):
    x = make("param", name="x", index=0, dtype="float64", shape=(symbolic.Dim.symbol("a"),))

    def build():
        shapes.require_equal(symbolic.Dim.symbol("a"), symbolic.Dim.symbol("b"), "test")
        return [B.neg(x)]

    with shapes.DimUnifier(set()):
        derivative_cache.derived("test", [x], [x], build)
    assert derivative_cache.stats["misses"] == 1 and derivative_cache.stats["stores"] == 0
    with shapes.DimUnifier(set()):
        derivative_cache.derived("test", [x], [x], lambda: [B.neg(x)])
    assert derivative_cache.stats["stores"] == 1


def test_a_derivation_that_leaves_a_stand_in_is_not_stored(folder):
    x = make("param", name="x", index=0, dtype="float64", shape=(3,))
    stand_in = make("param", name="__batched_test", index=-1, dtype="float64", shape=(3,))
    derivative_cache.derived("test", [x], [x], lambda: [B.mul(x, stand_in)])
    assert derivative_cache.stats["stores"] == 0


def test_no_entry_with_the_cache_off(folder, monkeypatch):
    monkeypatch.setenv("FUSEGRAD_CACHE", "0")
    digests()
    assert not list(folder.iterdir())
    assert derivative_cache.stats == {key: 0 for key in derivative_cache.stats}


def test_dims_unpickled_from_another_process_hash_like_this_ones():
    # str hashes differ between processes: a Dim must not carry its hash in a pickle
    code = ("import pickle, sys; from fusegrad.compiler import symbolic as s; "
            "d = s.Dim.symbol('n') * 2 + s.Dim.symbol('m'); hash(d); "
            "sys.stdout.buffer.write(pickle.dumps(d))")
    environment = dict(os.environ, PYTHONHASHSEED="777")
    data = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True,
                          check=True, timeout=60).stdout
    here = symbolic.Dim.symbol("n") * 2 + symbolic.Dim.symbol("m")
    unpickled = pickle.loads(data)
    assert unpickled == here and hash(unpickled) == hash(here) and unpickled in {here}
