"""The graph verifier (compiler/verify.py) reruns every shape rule and refuses a graph
whose shapes or dim checks do not follow from its rules."""

import dataclasses

import numpy as np
import pytest

import fusegrad as fg
from fusegrad.compiler import symbolic
from fusegrad.compiler.ops import SHAPE
from fusegrad.compiler.verify import verify


def logistic(w, X, y):
    return np.sum(np.log1p(np.exp(-y * (X @ w))))


def traced(fn=logistic):
    return fg.compile_grad(fn).trace(np.ones(3), np.ones((4, 3)), np.ones(4))[0]


def test_a_traced_function_verifies():
    function = traced()
    assert verify(function) is function


def test_a_node_whose_shape_is_not_its_rules_is_refused(monkeypatch):
    function = traced()
    rule = SHAPE["matmul"]

    def one_row_more(inputs, attrs):  # the graph's matmul no longer follows its rule
        dtype, shape = rule(inputs, attrs)
        return dtype, (symbolic.as_dim(shape[0]) + 1,) + tuple(shape[1:])

    monkeypatch.setitem(SHAPE, "matmul", one_row_more)
    with pytest.raises(fg.FusegradError, match=r"verify: <matmul.*its rule gives"):
        verify(function)


def test_an_equality_that_is_not_a_run_time_check_is_refused():
    def shifted(w: fg.f64["n"], y: fg.f64["m"]):
        return np.sum(w[1:] * y)

    function = fg.compile(shifted).trace(np.ones(4), np.ones(3))[0]
    assert function.checks  # m == n − 1 cannot merge (m is named): a run-time check
    with pytest.raises(fg.FusegradError, match="is not among the function's dim checks"):
        verify(dataclasses.replace(function, checks=()))
