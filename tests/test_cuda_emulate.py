"""`target="cuda"` end to end without a GPU: the generated CUDA C of whole functions
(gradients, Hessians, row-wise softmax, matrix products as loops) runs on the CPU
emulation of the device (FUSEGRAD_CUDA_DEVICE=emulate, runtime/cuda/emulate.py) and is
compared with the CPU path and the reference interpreter; the same sources are compiled
by NVRTC to CUBIN for sm_80 and sm_90.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fusegrad as fg
from reference import reference
from test_cuda_render import one_translation_unit
from test_cuda_runtime import chain, logistic, needs_nvrtc

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the emulation needs g++")


@pytest.fixture(autouse=True)
def emulated(monkeypatch):
    monkeypatch.setenv("FUSEGRAD_CUDA_DEVICE", "emulate")


def row_logsumexp(X):
    return np.sum(fg.logsumexp(X, axis=1))


def mlp(W1, b1, W2, b2, X, Y):
    hidden = np.tanh(X @ W1 + b1)
    return -np.sum(Y * fg.log_softmax(hidden @ W2 + b2, axis=1)) / X.shape[0]


def column_stats(X, c):
    """Reductions over axis 0, broadcasting, maximum/where and a scalar parameter."""
    centered = X - np.mean(X, axis=0)
    clipped = np.where(centered > c, centered, np.maximum(centered, -c))
    return np.sum(clipped * clipped) + np.max(np.abs(X))


def rng_args(seed, *shapes, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) if s else dtype(rng.standard_normal())
            for s in shapes]


def mlp_args(batch=37, inputs=6, hidden=9, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    params = rng_args(seed, (inputs, hidden), (hidden,), (hidden, classes), (classes,))
    X = rng.standard_normal((batch, inputs))
    Y = np.eye(classes)[rng.integers(0, classes, batch)]
    return [*params, X, Y]


def logistic_args(m=300, n=7, dtype=np.float64, seed=1):
    w, X = rng_args(seed, (n,), (m, n), dtype=dtype)
    y = np.sign(np.random.default_rng(seed).standard_normal(m)).astype(dtype)
    return [w, X, y]


#: (name, compiled-function maker, arguments, rtol against the CPU path)
CASES = [
    ("logistic_grad", lambda: fg.compile_grad(logistic), logistic_args(), 1e-12),
    ("logistic_grad_large", lambda: fg.compile_grad(logistic), logistic_args(5000, 33), 1e-12),
    ("logistic_grad_f32", lambda: fg.compile_grad(logistic), logistic_args(300, 7, np.float32), 2e-5),
    ("logistic_hessian", lambda: fg.compile_hessian(logistic), logistic_args(200, 5), 1e-12),
    ("chain_grad", lambda: fg.compile_grad(chain), rng_args(2, (10_001,)), 1e-12),
    ("chain_grad_f32", lambda: fg.compile_grad(chain), rng_args(2, (9000,), dtype=np.float32), 2e-5),
    ("row_logsumexp_grad", lambda: fg.compile_grad(row_logsumexp), rng_args(3, (130, 33)), 1e-12),
    ("mlp_grads", lambda: fg.compile_grad(mlp, wrt=(0, 1, 2, 3)), mlp_args(), 1e-11),
    ("column_stats_grad", lambda: fg.compile_grad(column_stats, wrt=(0, 1)),
     [rng_args(4, (50, 6))[0], 0.5], 1e-12),
]


def _close(actual, expected, rtol):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def _leaves(tree):
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in _leaves(item)]
    return [tree]


@pytest.mark.parametrize("name, make, args, rtol", CASES, ids=[c[0] for c in CASES])
def test_cuda_target_equals_the_cpu_path(name, make, args, rtol):
    cpu = make()
    cuda = fg.compile(cpu, target="cuda")
    expected, actual = cpu(*args), cuda(*args)
    for a, e in zip(_leaves(actual), _leaves(expected), strict=True):
        _close(a, e, rtol)


def test_mlp_equals_the_reference_interpreter():
    args = mlp_args(batch=19, seed=5)
    both = fg.value_and_grad(mlp, wrt=(0, 1, 2, 3))
    actual = fg.compile(both, target="cuda")(*args)
    for a, e in zip(_leaves(actual), _leaves(reference(both, *args)), strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-11, atol=1e-13)


def test_kernels_of_the_workloads():
    """W2 is a block reduction and its combine; W1's rows share a warp each; the MLP's
    products are tiled."""
    from fusegrad.compiler.cuda import plan
    from fusegrad.runtime.cuda.launcher import to_loop_ir

    def kinds(compiled, *args):
        stmts = plan.flatten_blocks(to_loop_ir(compiled.trace(*args)[0]).body)
        return [type(k).__name__ for k in plan.plan(stmts, set(plan.slots(stmts)))]

    assert kinds(fg.compile_grad(chain), *rng_args(0, (10,))) == ["ChunkReduction", "Combine"]
    assert kinds(fg.compile_grad(logistic), *logistic_args()) == [
        "GridLoop", "RowBlock", "Combine", "ChunkReduction", "GridLoop"]
    assert "TiledGemm" in kinds(fg.compile_grad(mlp, wrt=(0, 1, 2, 3)), *mlp_args())


def test_one_specialization_serves_every_size_and_zero_sizes():
    f = fg.compile_grad(logistic, target="cuda")
    for m, n in [(2, 2), (64, 3), (65, 3), (1000, 2), (0, 4)]:
        value, grad = f(*logistic_args(m, n))
        expected_value, expected_grad = fg.compile_grad(logistic)(*logistic_args(m, n))
        _close(value, expected_value, 1e-12)
        _close(grad, expected_grad, 1e-12)
    assert f.cache_size == 1


def test_results_are_the_same_bits_on_every_call():
    f = fg.compile_grad(chain, target="cuda")
    (x,) = rng_args(7, (50_000,))
    first = f(x)
    for _ in range(2):
        again = f(x)
        assert again[0] == first[0] and again[1].tobytes() == first[1].tobytes()


UNARY = [np.exp, np.tanh, np.log1p, np.sin, np.cos, np.abs, fg.sigmoid, np.sqrt, np.expm1]


@settings(max_examples=8)
@given(
    ops=st.lists(st.sampled_from(UNARY), min_size=1, max_size=4),
    size=st.integers(0, 3000),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_random_elementwise_chains_and_gradients(ops, size, dtype):
    def f(x):
        y = x
        for op in ops:
            y = op(y * 0.5) + y * 0.25  # keeps values moderate, and sqrt's input positive
            y = np.abs(y) + 0.1 if op is np.sqrt else y
        return np.sum(y)

    x = np.random.default_rng(size).uniform(-2, 2, size).astype(dtype)
    actual = fg.compile_grad(f, target="cuda")(x)
    expected = fg.compile_grad(f)(x)
    rtol = 1e-4 if dtype == np.float32 else 1e-11
    for a, e in zip(actual, expected):
        _close(a, e, rtol)


# -- NVRTC -----------------------------------------------------------------------------------
@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvrtc_compiles_every_function_here(arch):
    from fusegrad.runtime.cuda import nvrtc

    sources = []
    for name, make, args, _ in CASES:
        source = make().cuda_source(*args)
        # kernel names made unique in one unit (several cases trace the same function)
        sources.append(re.sub(r"(__launch_bounds__\(\d+\) )(\w+)\(", rf"\1{name}_\2(", source))
    cubin = nvrtc.compile_cubin(one_translation_unit(sources), arch, "test_cuda_emulate.cu")
    assert cubin[:4] == b"\x7fELF"
