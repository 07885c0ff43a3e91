"""Scalar expressions of the loop IR as CUDA C, for one statement of a kernel.

Expressions are DAGs (a derivative reuses its primal's nodes): nodes are numbered by
structure and visited once, and a sub-expression the statement uses more than once is
computed once into a `const` temporary declared before the statement. The text stays
linear in the size of the DAG.
"""

from __future__ import annotations

import re

from .. import symbolic
from ..loopir import AccRef, Apply, Const, DimValue, Load
from .ops import CUDA_OPS, VALUE_TYPES, constant


def identifier(name: str) -> str:
    """A C identifier made of `name` (a buffer, dim or function name)."""
    text = re.sub(r"[^0-9A-Za-z_]", "_", name)
    return text if text and not text[0].isdigit() else f"f_{text}"


def buffer_name(buffer) -> str:
    """The C name of a buffer: `b_<name>`."""
    return f"b_{identifier(buffer.name)}"


class ExpressionWriter:
    """One statement's expression, with common sub-expressions computed once.

    Expressions are DAGs (a derivative reuses its primal's nodes), so nodes are keyed
    by structure and visited once: text size stays linear in the DAG's size."""

    def __init__(self, kernel):
        """`kernel`: the render.py writer of the kernel the statement is in (its
        `emit`, `index`, buffers read, accumulator names and temporaries count)."""
        self.kernel = kernel
        self.keys = {}  # id(node) → (structural key, node)
        self.numbers = {}  # structure → its key
        self.uses = {}  # key → number of parents using it
        self.bound = {}  # key → temporary name

    def render(self, expr) -> str:
        self._count(expr)
        return self._text(expr)

    def _key(self, e) -> int:
        """A number per distinct structure: keys of parents hold their children's
        numbers, so a key is hashed in constant time however deep the DAG."""
        known = self.keys.get(id(e))
        if known is not None:
            return known[0]
        if isinstance(e, Const):
            shape = ("const", repr(e.value), e.dtype)
        elif isinstance(e, DimValue):
            shape = ("dim", symbolic.as_dim(e.dim).key, e.dtype)
        elif isinstance(e, Load):
            shape = ("load", id(e.buffer), symbolic.as_dim(e.index).key)
        elif isinstance(e, AccRef):
            shape = ("acc", id(e.acc))
        else:
            shape = ("apply", e.op, e.dtype, tuple(self._key(a) for a in e.args))
        key = self.numbers.setdefault(shape, len(self.numbers))
        self.keys[id(e)] = (key, e)  # holding e: its id is not reused while we look
        return key

    def _count(self, root):
        seen = set()
        stack = [root]
        self.uses[self._key(root)] = 1
        while stack:
            e = stack.pop()
            key = self._key(e)
            if key in seen or not isinstance(e, Apply):
                continue
            seen.add(key)
            for arg in e.args:
                arg_key = self._key(arg)
                self.uses[arg_key] = self.uses.get(arg_key, 0) + 1
                stack.append(arg)

    def _text(self, e) -> str:
        key = self._key(e)
        name = self.bound.get(key)
        if name is not None:
            return name
        kernel = self.kernel
        if isinstance(e, Const):
            return constant(e.value, e.dtype)
        if isinstance(e, DimValue):
            return f"(({VALUE_TYPES[e.dtype]}){kernel.index(e.dim)})"
        if isinstance(e, AccRef):
            if e.acc in kernel.slot_of and e.acc not in kernel.private:
                return self._text(Load(kernel.slot_of[e.acc], 0))
            return kernel.acc_name(e.acc)
        if isinstance(e, Load):
            kernel.reads.add(e.buffer)
            text = f"{buffer_name(e.buffer)}[{kernel.index(e.index)}]"
            if e.buffer.dtype == "bool":
                text = f"({text} != 0)"
        else:
            rule = CUDA_OPS.get(e.op)
            if rule is None:
                raise TypeError(f"the CUDA renderer has no rule for op {e.op!r}")
            text = rule([self._text(a) for a in e.args], e.dtype)
        if self.uses.get(key, 0) < 2:
            return text
        name = f"e{kernel.temporaries}"
        kernel.temporaries += 1
        self.bound[key] = name
        kernel.emit(f"const {VALUE_TYPES[e.dtype]} {name} = {text};")
        return name
