"""The examples run and check themselves (each asserts its own agreement with NumPy)."""

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, *argv):
    saved = sys.argv
    sys.argv = [name, *argv]
    try:
        runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    finally:
        sys.argv = saved


def test_logistic_regression_example():
    run_example("logistic_regression.py")


@pytest.mark.parametrize("rows, cols", [("20000", "16"), ("3000", "150")])
def test_newton_example_converges_and_agrees_with_numpy(rows, cols, capsys):
    run_example("newton_logistic.py", "--rows", rows, "--cols", cols)
    out = capsys.readouterr().out
    assert "converged" in out and "max |w − w_numpy|" in out


def test_scipy_trust_exact_example_fits_and_agrees_with_least_squares(capsys):
    pytest.importorskip("scipy")
    run_example("scipy_trust_exact.py")
    out = capsys.readouterr().out
    assert "trust-exact" in out and "max |θ − θ_least_squares|" in out
