"""What a compiled function computes, in matrix notation (plain text or LaTeX).

`explain(function, labels)` prints the outputs of the *simplified* graph, the one
the kernel is compiled from, so the derivative shown is the one computed:

    logistic = Σ log1p(exp(u))
    ∇_w      = −Xᵀ (y ⊙ σ(u))
    where
      u = −y ⊙ X w

Conventions: juxtaposition is the matrix product, ⊙ and / are element-wise,
ᵀ transposes, diag(s) M is M with row i scaled by sᵢ (how a Hessian's
Xᵀ diag(s) X appears), Σ sums every element, broadcasts and reshapes are left
implicit (NumPy's broadcasting), and a value used more than once gets a name
(u, v, s, …) defined under "where".
"""

from __future__ import annotations

from . import build as B
from . import symbolic
from .ir import Function, Node, toposort

# Precedence: juxtaposition (the matrix product) binds tighter than ⊙ and /, so
# y ⊙ X w is y ⊙ (X w), and −X w is −(X w).
SUM, HADAMARD, PRODUCT, UNARY, POSTFIX, ATOM = 1, 2, 3, 4, 5, 6
# Ops that only move or reinterpret elements: printed as their input.
TRANSPARENT = {"broadcast_to", "reshape", "cast"}
NAMES = ["u", "v", "s", "t", "p", "q", "r", "a", "b", "c", "d", "e", "h", "k"]

PLAIN = {
    "transpose": "{0}ᵀ", "neg": "−{0}", "add": "{0} + {1}", "sub": "{0} − {1}",
    "mul": "{0} ⊙ {1}", "scale": "{0} {1}", "div": "{0} / {1}", "matmul": "{0} {1}",
    "diag": "diag({0})", "sum": "Σ {0}", "sum_axes": "sum({0}, axis={1})",
    "max": "max({0})", "max_axes": "max({0}, axis={1})", "min": "min({0})",
    "min_axes": "min({0}, axis={1})", "pow": "{0}^{1}", "abs": "|{0}|", "sqrt": "√{0}",
    "logistic": "σ({0})", "log1p": "log1p({0})", "eye": "I", "call": "{0}({1})",
    "where": "where({0}, {1}, {2})", "compare": "{0} {op} {1}", "define": "{0} = {1}",
}
LATEX = {
    "transpose": "{0}^\\top", "neg": "-{0}", "add": "{0} + {1}", "sub": "{0} - {1}",
    "mul": "{0} \\odot {1}", "scale": "{0} \\, {1}", "div": "\\frac{{{0}}}{{{1}}}",
    "matmul": "{0} \\, {1}", "diag": "\\operatorname{{diag}}({0})", "sum": "\\sum {0}",
    "sum_axes": "\\textstyle\\sum_{{\\mathrm{{axis}}={1}}} {0}", "max": "\\max {0}",
    "max_axes": "\\max_{{\\mathrm{{axis}}={1}}} {0}", "min": "\\min {0}",
    "min_axes": "\\min_{{\\mathrm{{axis}}={1}}} {0}", "pow": "{{{0}}}^{{{1}}}",
    "abs": "\\lvert {0} \\rvert", "sqrt": "\\sqrt{{{0}}}", "logistic": "\\sigma({0})",
    "log1p": "\\log(1 + {0})", "eye": "I", "call": "\\operatorname{{{0}}}({1})",
    "where": "\\operatorname{{where}}({0}, {1}, {2})", "compare": "{0} {op} {1}",
    "define": "{0} &= {1}",
}
COMPARE = {"lt": "<", "le": "≤", "gt": ">", "ge": "≥", "eq": "=", "ne": "≠"}
LATEX_COMPARE = {"lt": "<", "le": "\\le", "gt": ">", "ge": "\\ge", "eq": "=", "ne": "\\ne"}
FUNCTIONS = {"exp", "log", "expm1", "tanh", "sin", "cos", "sign", "maximum", "minimum",
             "logaddexp", "stop_gradient", "logical_and", "logical_or", "logical_not"}


def explain(function: Function, labels=None, latex: bool = False) -> str:
    """The outputs as equations, `labels[k] = …` (see the module doc)."""
    printer = _Printer(function, latex)
    labels = [_label(label, latex) for label in labels or []]
    labels += [f"out{k}" for k in range(len(labels), len(function.outputs))]
    rows = [(label, printer.top(out)) for label, out in zip(labels, function.outputs)]
    definitions = printer.definitions()
    if latex:
        lines = ["\\begin{aligned}"]
        lines += [f"  {label} &= {text} \\\\" for label, text in rows]
        if definitions:
            lines.append("  &\\text{where} \\\\")
            lines += [f"  {name} &= {text} \\\\" for name, text in definitions]
        lines[-1] = lines[-1].removesuffix(" \\\\")
        lines.append("\\end{aligned}")
        return "\n".join(lines)
    width = max(len(label) for label, _ in rows) if rows else 0
    lines = [f"{label.ljust(width)} = {text}" for label, text in rows]
    if definitions:
        lines.append("where")
        lines += [f"  {name} = {text}" for name, text in definitions]
    return "\n".join(lines)


_LABELS = {
    "grad": ("∇_{0}", "\\nabla_{{{0}}}"),
    "hessian": ("∇²_{0}", "\\nabla^2_{{{0}}}"),
    "jacobian": ("∂/∂{0}", "\\frac{{\\partial}}{{\\partial {0}}}"),
}


def _label(label, latex: bool) -> str:
    """A label is text, or (kind, parameter) with kind "grad", "hessian" or "jacobian"."""
    if isinstance(label, str):
        return label if not latex else f"\\mathrm{{{label}}}"
    kind, name = label
    return _LABELS[kind][1 if latex else 0].format(name)


def _core(node: Node) -> Node:
    while node.op in TRANSPARENT:
        node = node.inputs[0]
    return node


def _is_trivial(node: Node) -> bool:
    """Not worth a name: leaves, and a negation or transpose of a leaf."""
    if node.op in ("param", "const", "dim", "iota") or B.is_eye(node):
        return True
    if node.op in ("neg", "transpose"):
        return _is_trivial(_core(node.inputs[0]))
    return False


class _Printer:
    def __init__(self, function: Function, latex: bool):
        self.latex = latex
        self.forms = LATEX if latex else PLAIN
        self.params = {p.node.id: p.name for p in function.params}
        nodes = toposort(list(function.outputs))
        uses: dict[int, int] = {}
        for node in nodes:
            if node.op in TRANSPARENT:
                continue
            for child in node.inputs:  # x ⊙ x uses x twice
                child = _core(child)
                uses[child.id] = uses.get(child.id, 0) + 1
        for out in function.outputs:
            uses[_core(out).id] = uses.get(_core(out).id, 0) + 1
        taken = set(self.params.values())
        free = (n for n in NAMES + [f"u{k}" for k in range(1, 100)] if n not in taken)
        self.names: dict[int, str] = {}
        self.order: list[Node] = []
        for node in nodes:
            if uses.get(node.id, 0) > 1 and node.op not in TRANSPARENT and not _is_trivial(node):
                self.names[node.id] = next(free)
                self.order.append(node)

    # -- entry points -------------------------------------------------------------------------
    def top(self, node: Node) -> str:
        core = _core(node)
        if core.id in self.names:  # an output that is also a named value: show its formula
            return self._body(core)[0]
        return self.expr(node)[0]

    def definitions(self) -> list[tuple[str, str]]:
        return [(self.names[n.id], self._body(n)[0]) for n in self.order]

    # -- expressions: (text, precedence) ------------------------------------------------------
    def expr(self, node: Node) -> tuple[str, int]:
        node = _core(node)
        if node.id in self.params:
            return self.params[node.id], ATOM
        if node.id in self.names:
            return self.names[node.id], ATOM
        return self._body(node)

    def wrap(self, node: Node, minimum: int) -> str:
        text, precedence = self.expr(node)
        if precedence < minimum:
            return f"\\left({text}\\right)" if self.latex else f"({text})"
        return text

    def form(self, name: str, *args, **kw) -> str:
        return self.forms[name].format(*args, **kw)

    def _body(self, node: Node) -> tuple[str, int]:
        op = node.op
        value = B.const_value(node)
        if value is not None:
            return _number(value), ATOM if value >= 0 else UNARY
        if B.is_eye(node):
            return self.form("eye"), ATOM
        if op == "dim":
            return symbolic.format_dim(node.attr("dim")), ATOM
        if op == "transpose" and node.ndim == 2:
            scaled = _row_scaled(_core(node.inputs[0]))
            if scaled is not None:  # (diag(s) M)ᵀ = Mᵀ diag(s)
                s, m = scaled
                transposed = self.form("transpose", self.wrap(m, POSTFIX))
                return self.form("matmul", transposed, self.form("diag", self.expr(s)[0])), PRODUCT
            return self.form("transpose", self.wrap(node.inputs[0], ATOM)), POSTFIX
        if op == "neg":
            return self.form("neg", self.wrap(node.inputs[0], PRODUCT)), UNARY
        if op in ("add", "sub"):
            a, b = node.inputs
            return self.form(op, self.wrap(a, SUM), self.wrap(b, HADAMARD if op == "sub" else SUM)), SUM
        if op == "mul":
            return self._product(node)
        if op == "div":
            a, b = node.inputs
            if self.latex:
                return self.form("div", self.expr(a)[0], self.expr(b)[0]), ATOM
            return self.form("div", self.wrap(a, HADAMARD), self.wrap(b, PRODUCT)), HADAMARD
        if op == "matmul":
            a, b = node.inputs
            return self.form("matmul", self.wrap(a, PRODUCT), self.wrap(b, UNARY)), PRODUCT
        if op.startswith("reduce_"):
            return self._reduction(node)
        if op == "pow":
            return self.form("pow", self.wrap(node.inputs[0], ATOM), self.wrap(node.inputs[1], ATOM)), POSTFIX
        if op in ("abs", "sqrt", "logistic", "log1p"):
            return self.form(op, self.expr(node.inputs[0])[0]), ATOM
        if op in COMPARE:
            table = LATEX_COMPARE if self.latex else COMPARE
            return self.form("compare", self.wrap(node.inputs[0], SUM),
                             self.wrap(node.inputs[1], SUM), op=table[op]), SUM - 1
        if op == "select":
            return self.form("where", *(self.expr(i)[0] for i in node.inputs)), ATOM
        args = ", ".join(self.expr(i)[0] for i in node.inputs)
        name = op if op != "stop_gradient" else "stop_gradient"
        return self.form("call", name, args), ATOM

    def _product(self, node: Node) -> tuple[str, int]:
        a, b = node.inputs
        scaled = _row_scaled(node)
        if scaled is not None:
            s, m = scaled
            return self.form("matmul", self.form("diag", self.expr(s)[0]), self.wrap(m, UNARY)), PRODUCT
        for c, x in ((a, b), (b, a)):
            if _core(c).ndim == 0 or B.const_value(c) is not None:  # a scalar times an array
                return self.form("scale", self.wrap(c, POSTFIX), self.wrap(x, PRODUCT)), PRODUCT
        return self.form("mul", self.wrap(a, HADAMARD), self.wrap(b, HADAMARD)), HADAMARD

    def _reduction(self, node: Node) -> tuple[str, int]:
        kind = node.op.removeprefix("reduce_")
        x = node.inputs[0]
        if len(node.attr("axes")) == x.ndim:
            return self.form(kind, self.wrap(x, UNARY if kind == "sum" else ATOM)), UNARY
        axes = node.attr("axes")
        axis = str(axes[0]) if len(axes) == 1 else str(tuple(axes))
        return self.form(f"{kind}_axes", self.expr(x)[0], axis), ATOM


def _number(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:g}"


def _row_scaled(node: Node):
    """(s, M) when node = M ⊙ S, M a matrix and S the vector s broadcast along M's
    rows (Sᵢⱼ = sᵢ), i.e. node = diag(s) M; else None."""
    if node.op != "mul" or node.ndim != 2:
        return None
    for m, s in (node.inputs, node.inputs[::-1]):
        vector = _varies_along(s, 0)
        if (vector is not None and _core(vector).ndim == 1 and _core(m).ndim == 2
                and _varies_along(m, 0) is None):
            return vector, m
    return None


def _varies_along(node: Node, axis: int):
    """The 1-D vector v when node (2-D) is v laid out along `axis` (constant along the
    other one), through broadcasts, reshapes and transposes; else None."""
    if node.op == "transpose":
        perm = node.attr("perm")
        return _varies_along(node.inputs[0], perm[axis])
    if node.op == "broadcast_to":
        x = node.inputs[0]
        lead = node.ndim - x.ndim
        if axis < lead:
            return None
        shape = [1] * lead + list(x.shape)
        others = [k for k in range(node.ndim) if k != axis]
        if all(shape[k] == 1 for k in others):
            return _varies_along(x, axis - lead) if x.ndim == node.ndim else _vector_of(x)
        return None
    if node.op == "reshape" and node.ndim == 2:
        x = node.inputs[0]
        if x.ndim == 1 and node.shape[1 - axis] == 1:
            return x
    return None


def _vector_of(node: Node):
    return node if node.ndim == 1 else None
