"""The per-op rule tables. Each op family module adds one row per op to each.

- SHAPE[op](inputs, attrs) -> (dtype, shape): run when a node is built.
- EVALUATE[op](node, values, dims) -> ndarray: the NumPy reference interpreter.
- VJP[op](cotangent, node) -> one cotangent (a node, or None for a symbolic
  zero) per input: reverse-mode derivative rules, built from `compiler.build`.

Lowering to the loop IR and rendering have tables of their own next to the
passes that use them (`compiler/lower.py`, `compiler/llvm/`).
"""

SHAPE: dict = {}
EVALUATE: dict = {}
VJP: dict = {}

# Ops with no derivative at all (masks, leaves): their VJP row says so explicitly.
NOT_DIFFERENTIABLE = object()


def all_ops() -> list[str]:
    from . import elementwise, index, layout, linalg, reduce  # noqa: F401  (registers rows)

    return sorted(SHAPE)
