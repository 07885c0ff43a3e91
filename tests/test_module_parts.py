"""Modules compiled in parts on several threads (runtime/module_parts.py, runtime/jit.py):
the parts are valid modules that together define what the whole did, and a kernel
compiled in parts computes the same bits as one compiled whole."""

import re

import llvmlite.binding as llvm
import numpy as np
import pytest

import fusegrad as fg
from fusegrad.runtime import jit
from fusegrad.runtime.module_parts import split_module

DEFINED = re.compile(r'^define [^@]*@("[^"]+"|[\w.$-]+)\(', re.MULTILINE)
EXTERNAL = re.compile(r'^define (?!internal)[^@]*@("[^"]+"|[\w.$-]+)\(', re.MULTILINE)


def mlp(W1, b1, W2, b2, X, Y):
    hidden = np.tanh(X @ W1 + b1)
    logits = hidden @ W2 + b2
    return -np.mean(np.sum(Y * fg.log_softmax(logits, axis=1), axis=1))


def mlp_closed_form(W1, b1, W2, b2, X, Y):
    """Value and the four gradients, derived by hand, in float64."""
    W1, b1, W2, b2, X, Y = (a.astype(np.float64) for a in (W1, b1, W2, b2, X, Y))
    hidden = np.tanh(X @ W1 + b1)
    logits = hidden @ W2 + b2
    shifted = logits - logits.max(axis=1, keepdims=True)
    exps = np.exp(shifted)
    sums = exps.sum(axis=1, keepdims=True)
    value = -np.sum(Y * (shifted - np.log(sums))) / len(X)
    d_logits = (exps / sums - Y) / len(X)
    d_pre = (d_logits @ W2.T) * (1.0 - hidden * hidden)
    return value, X.T @ d_pre, d_pre.sum(axis=0), hidden.T @ d_logits, d_logits.sum(axis=0)


def mlp_arguments(dtype=np.float64):
    rng = np.random.default_rng(3)
    W1, b1 = rng.standard_normal((8, 24)) / 3, rng.standard_normal(24) / 10
    W2, b2 = rng.standard_normal((24, 5)) / 5, rng.standard_normal(5) / 10
    X, Y = rng.standard_normal((40, 8)), np.eye(5)[rng.integers(0, 5, 40)]
    return [a.astype(dtype) for a in (W1, b1, W2, b2, X, Y)]


def mlp_module() -> str:
    compiled = fg.compile_grad(mlp, wrt=(0, 1, 2, 3))
    return compiled.kernel(*mlp_arguments()).llvm_ir_unoptimized


def test_each_parallel_loop_body_is_a_part_of_its_own():
    text = mlp_module()
    parts = split_module(text)
    bodies = {name for name in DEFINED.findall(text) if re.search(r'_par\d+"$', name)}
    assert len(bodies) >= 2
    assert len(parts) == len(bodies) + 1  # the entry point with its packed twin, each body
    assert [len(p) for p in parts] == sorted((len(p) for p in parts), reverse=True)


def test_the_parts_are_valid_modules_defining_every_external_function_once():
    text = mlp_module()
    parts = split_module(text)
    defined = []
    for part in parts:
        llvm.parse_assembly(part).verify()
        defined += EXTERNAL.findall(part)
    bodies = {name for name in DEFINED.findall(text) if re.search(r'_par\d+"$', name)}
    roots = set(EXTERNAL.findall(text)) | bodies
    assert sorted(defined) == sorted(roots)


def test_a_module_with_one_root_or_not_cut_as_expected_stays_whole():
    one = 'define i32 @"f"(i32 %"x")\n{\nentry:\n  ret i32 %"x"\n}\n'
    assert split_module(one) == [one]
    broken = 'define i32 @f( {'
    assert split_module(broken) == [broken]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compiled_in_parts_or_whole_gives_the_same_bits(monkeypatch, dtype):
    arguments = mlp_arguments(dtype)
    results = []
    for threads in ("1", "2", "3"):
        monkeypatch.setenv("FUSEGRAD_COMPILE_THREADS", threads)
        monkeypatch.setenv("FUSEGRAD_CACHE", "0")
        from fusegrad.runtime import kernel

        monkeypatch.setattr(kernel, "_kernels", {})  # compile again, not from memory
        value, grads = fg.compile_grad(mlp, wrt=(0, 1, 2, 3))(*arguments)
        results.append([np.asarray(value)] + list(grads))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)
    tolerance = 1e-10 if dtype == np.float64 else 2e-4
    for got, want in zip(results[0], mlp_closed_form(*arguments)):
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


def test_objects_from_parts_load_again_as_one_kernel():
    text = mlp_module()
    objects = []
    compiled = jit.jit_compile(text, "mlp_packed", on_object=objects.append)
    assert len(objects) == (len(split_module(text)) if jit.compile_threads() > 1 else 1)
    loaded = jit.jit_load(objects, "mlp_packed")
    assert loaded.address and compiled.address


def test_a_part_that_fails_raises_a_compile_error_in_the_caller(monkeypatch):
    monkeypatch.setenv("FUSEGRAD_COMPILE_THREADS", "2")
    text = mlp_module().replace("fadd", "fadd_not_an_instruction", 1)
    with pytest.raises(fg.CompileError, match="invalid LLVM IR"):
        jit.jit_compile(text, "mlp_packed")


@pytest.mark.parametrize("setting", ["0", "-1", "two", "1.5"])
def test_a_bad_compile_thread_count_is_a_clear_error(monkeypatch, setting):
    monkeypatch.setenv("FUSEGRAD_COMPILE_THREADS", setting)
    with pytest.raises(ValueError, match="FUSEGRAD_COMPILE_THREADS must be a positive integer"):
        jit.compile_threads()
