"""The rule tables are complete: every op has a row in every table that a stage reads.

An op is a row in `SHAPE` (that is what `all_ops()` lists); it must also have a
row in `EVALUATE` (the reference interpreter), in `VJP` and `JVP` (possibly the
explicit `NOT_DIFFERENTIABLE`, the same in both), in the lowering (`ELEMENT` to
read it inline, or `EMIT` for a loop nest of its own) and, for element-wise ops,
in the LLVM scalar table.
A missing row would otherwise surface only when some graph first uses the op.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

from fusegrad.compiler import lower
from fusegrad.compiler.ops import EVALUATE, NOT_DIFFERENTIABLE, SHAPE, VJP, all_ops
from fusegrad.compiler.ops.tables import JVP

OPS = all_ops()
NOT_LOWERED = {"param"}  # bound to an input buffer, never computed


def test_there_are_ops():
    assert len(OPS) == len(set(OPS)) > 0
    assert {"add", "exp", "reduce_sum", "matmul", "reshape", "select", "param"} <= set(OPS)


@pytest.mark.parametrize("op", OPS)
def test_every_op_has_a_shape_evaluate_and_vjp_row(op):
    assert callable(SHAPE.get(op)), f"SHAPE has no row for {op!r}"
    assert callable(EVALUATE.get(op)), f"EVALUATE has no row for {op!r}"
    assert op in VJP, f"VJP has no row for {op!r} (use NOT_DIFFERENTIABLE to say it has none)"
    assert VJP[op] is NOT_DIFFERENTIABLE or callable(VJP[op])


@pytest.mark.parametrize("op", OPS)
def test_every_op_has_a_jvp_row_that_agrees_with_its_vjp_row(op):
    # Forward and reverse mode differentiate the same ops: an op is differentiable in both
    # or in neither.
    assert op in JVP, f"JVP has no row for {op!r} (use NOT_DIFFERENTIABLE to say it has none)"
    assert (JVP[op] is NOT_DIFFERENTIABLE) == (VJP[op] is NOT_DIFFERENTIABLE), (
        f"{op!r} is NOT_DIFFERENTIABLE in one of VJP and JVP only"
    )
    assert JVP[op] is NOT_DIFFERENTIABLE or callable(JVP[op])


def test_no_table_has_rows_for_unknown_ops():
    for name, table in (("EVALUATE", EVALUATE), ("VJP", VJP), ("JVP", JVP)):
        assert set(table) <= set(OPS), f"{name} rows without a SHAPE row: {set(table) - set(OPS)}"


@pytest.mark.parametrize("op", [op for op in OPS if op not in NOT_LOWERED])
def test_every_op_is_known_to_the_lowering(op):
    assert op in lower.ELEMENT or op in lower.EMIT, (
        f"{op!r} has neither an ELEMENT row (read inline) nor an EMIT row (own loop nest)"
    )


def test_the_lowering_knows_no_unknown_ops():
    assert set(lower.ELEMENT) | set(lower.EMIT) <= set(OPS)
    assert lower.ELEMENTWISE <= set(lower.ELEMENT)


def _positional(fn) -> int:
    parameters = inspect.signature(fn).parameters.values()
    return sum(1 for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


# Every row of a table has the same signature (the tables are data, read one way).
SIGNATURES = [
    ("SHAPE", SHAPE, 2),  # (inputs, attrs)
    ("EVALUATE", EVALUATE, 3),  # (node, values, dims)
    ("VJP", {op: rule for op, rule in VJP.items() if rule is not NOT_DIFFERENTIABLE}, 2),
    ("JVP", {op: rule for op, rule in JVP.items() if rule is not NOT_DIFFERENTIABLE}, 2),
    ("ELEMENT", lower.ELEMENT, 3),  # (lowering, node, idx)
    ("EMIT", lower.EMIT, 3),  # (lowering, node, buffer)
]


@pytest.mark.parametrize("name, table, arity", SIGNATURES, ids=[s[0] for s in SIGNATURES])
def test_every_row_of_a_table_has_the_tables_signature(name, table, arity):
    wrong = {op: _positional(rule) for op, rule in table.items() if _positional(rule) != arity}
    assert not wrong, f"{name} rows with another number of parameters than {arity}: {wrong}"


def _scalar_ops():
    for module_name in ("fusegrad.compiler.llvm.scalar", "fusegrad.compiler.llvm.render"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, "SCALAR_OPS"):
            return module
    pytest.skip("no LLVM scalar table (SCALAR_OPS) yet")


def test_every_elementwise_op_has_a_scalar_llvm_row():
    module = _scalar_ops()
    missing = sorted(lower.ELEMENTWISE - set(module.SCALAR_OPS))
    assert not missing, f"element-wise ops without an LLVM scalar row: {missing}"


def test_every_scalar_llvm_row_takes_the_same_arguments():
    module = _scalar_ops()
    table = getattr(module, "SCALAR_TABLE", None)
    if table is None:
        pytest.skip("SCALAR_OPS without a SCALAR_TABLE")
    assert set(table) == set(module.SCALAR_OPS)
    wrong = {op: _positional(row) for op, row in table.items() if _positional(row) != 3}
    assert not wrong, f"scalar rows that are not row(em, args, dtype): {wrong}"


def test_every_accumulator_the_lowering_uses_has_an_update_and_identities():
    module = _scalar_ops()
    updates = getattr(module, "ACC_UPDATE", None)
    identities = getattr(module, "ACC_IDENTITY", None)
    used = getattr(lower, "_ACC_OP", None)
    if updates is None or identities is None or used is None:
        pytest.skip("no accumulator tables")
    accumulators = set(used.values()) | {"add"}  # matmul accumulates with add
    assert set(used) == set(lower.EMIT) - {"matmul", "embed"}
    for acc in accumulators:
        assert acc in updates, f"no ACC_UPDATE row for {acc!r}"
        for dtype in ("float32", "float64"):
            assert (acc, dtype) in identities, f"no ACC_IDENTITY for {acc!r} in {dtype}"
