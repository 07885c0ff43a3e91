"""Algebraic simplification of the graph: smaller derivative graphs that read like math.

Reverse mode writes derivatives rule by rule, e.g. for log1p(eᵘ):

    ū = (1 / (eᵘ + 1)) ⊙ eᵘ        which is σ(u), and stable where eᵘ overflows

The `simplify` pass rebuilds the graph bottom-up and rewrites each node with the
rules of its op in `RULES` until none applies. Every rule is an identity of real
arithmetic that does not lose accuracy (most gain it: σ(u) instead of eᵘ/(eᵘ+1),
which is inf/inf = NaN for u > 709). Common subexpressions are shared already
(nodes are hash-consed), and the constructors in `build` drop x·1, x+0, I·A,
double transposes and reshapes of reshapes as they build.

Rules, by op (a, b, x, u: any nodes; c: a constant):

    neg:    −(−x) = x (in build)
    mul:    c₁·(c₂·x) = (c₁c₂)·x;  (1/a)·b = b/a;  (−a)·b = a·(−b) = −(a·b);  (−1)·x = −x;  σ(−u)·eᵘ = σ(u);
            Aᵀ ⊙ S = (A ⊙ Sᵀ)ᵀ for a broadcast S
    div:    eᵘ/(eᵘ + 1) = σ(u);  1/(eᵘ + 1) = σ(−u);  (−a)/b = −(a/b);  (a/b)/c = a/(b·c)
    add:    a + (−b) = a − b;  (−a) + b = b − a;  x + x = 2·x;  (a ± b) ± b = a ± 2·b
    sub:    a − (−b) = a + b;  1 − σ(u) = σ(−u)
    matmul: A·(−B) = −(A·B);  (−A)·B = −(A·B)
    reduce_sum: Σ over axes a broadcast repeats = the value times their extent
    exp:    e^(a − logaddexp(a, b)) = σ(a − b)
    reshape, transpose, broadcast_to:  of −x = −(of x)  (a negation moves outwards)
"""

from __future__ import annotations

from . import build as B
from . import symbolic
from .errors import ShapeError
from .ir import Function, Node, make, toposort

RULES: dict = {}
MAX_REWRITES_PER_NODE = 16


def simplify(function: Function) -> Function:
    outputs = tuple(simplify_nodes(function.outputs))
    if all(a is b for a, b in zip(outputs, function.outputs)):
        return function
    return Function(function.name, function.params, outputs, function.output_names,
                    function.checks, function.dim_reasons)


def simplify_nodes(outputs) -> list[Node]:
    """The outputs' graph rebuilt bottom-up with every node simplified (e.g. a gradient
    before it is differentiated again, so a Hessian starts from σ(u), not eᵘ/(eᵘ+1))."""
    rebuilt: dict[int, Node] = {}
    for node in toposort(list(outputs)):
        inputs = [rebuilt[i.id] for i in node.inputs]
        if all(a is b for a, b in zip(inputs, node.inputs)):
            new = node
        else:
            try:
                new = rebuild(node.op, inputs, dict(node.attrs))
            except ShapeError:
                # A dim the trace unified under another name (a node shared with another
                # trace keeps the names it was built with): keep this node as traced.
                new = node
        rebuilt[node.id] = simplify_node(new)
    return [rebuilt[o.id] for o in outputs]


def simplify_node(node: Node) -> Node:
    """The node rewritten by its op's rules until none applies (its inputs are simplified)."""
    for _ in range(MAX_REWRITES_PER_NODE):
        rewritten = None
        for rule in RULES.get(node.op, ()):
            try:
                rewritten = rule(node)
            except ShapeError:  # as in simplify_nodes: this rewrite is skipped
                rewritten = None
            if rewritten is not None:
                break
        if rewritten is None or rewritten is node:
            return node
        if rewritten.dtype != node.dtype or rewritten.ndim != node.ndim:
            raise AssertionError(f"internal: simplification changed {node} into {rewritten}")
        if rewritten.shape != node.shape:
            return node  # equal dims named differently by two traces: keep the traced node
        node = rewritten
    return node


# Ops whose constructors simplify as they build (x·1, I·A, reshape of reshape, …).
_CONSTRUCTORS = {
    "add": lambda inputs, attrs: B.add(*inputs),
    "sub": lambda inputs, attrs: B.sub(*inputs),
    "mul": lambda inputs, attrs: B.mul(*inputs),
    "div": lambda inputs, attrs: B.div(*inputs),
    "neg": lambda inputs, attrs: B.neg(*inputs),
    "matmul": lambda inputs, attrs: B.matmul(*inputs),
    "reshape": lambda inputs, attrs: B.reshape(inputs[0], attrs["shape"]),
    "transpose": lambda inputs, attrs: B.transpose(inputs[0], attrs["perm"]),
    "broadcast_to": lambda inputs, attrs: B.broadcast_to(inputs[0], attrs["shape"]),
}


def rebuild(op: str, inputs, attrs: dict) -> Node:
    """op(inputs; attrs), through the op's constructor when it has one."""
    constructor = _CONSTRUCTORS.get(op)
    if constructor is not None:
        return constructor(list(inputs), attrs)
    return make(op, inputs, **attrs)


def rule(*ops):
    def register(fn):
        for op in ops:
            RULES.setdefault(op, []).append(fn)
        return fn

    return register


def _is_const(node: Node, value: float) -> bool:
    return B.const_value(node) == value


def _negated(node: Node) -> Node | None:
    """x when node is −x."""
    return node.inputs[0] if node.op == "neg" else None


def _neg(node: Node) -> Node:
    return simplify_node(B.neg(node))


# -- products and quotients --------------------------------------------------------------------
@rule("mul")
def _reciprocal_times(node):
    """(1/a)·b = b/a"""
    a, b = node.inputs
    for left, right in ((a, b), (b, a)):
        if left.op == "div" and _is_const(left.inputs[0], 1.0):
            return simplify_node(B.div(right, left.inputs[1]))
    return None


@rule("mul")
def _logistic_times_exp(node):
    """σ(−u)·eᵘ = eᵘ/(1 + eᵘ) = σ(u)"""
    a, b = node.inputs
    for s, e in ((a, b), (b, a)):
        if s.op == "logistic" and e.op == "exp" and _are_negations(s.inputs[0], e.inputs[0]):
            return make("logistic", [e.inputs[0]])
    return None


def _are_negations(a: Node, b: Node) -> bool:
    return _negated(a) is b or _negated(b) is a


@rule("mul", "div", "matmul")
def _negation_outwards(node):
    """(−a)·b = a·(−b) = −(a·b), and the same for a/b and A·B."""
    a, b = node.inputs
    inner_a, inner_b = _negated(a), _negated(b)
    if inner_a is not None and inner_b is not None:
        return rebuild(node.op, [inner_a, inner_b], dict(node.attrs))
    if inner_a is not None:
        return _neg(simplify_node(rebuild(node.op, [inner_a, b], dict(node.attrs))))
    if inner_b is not None and node.op != "div":
        return _neg(simplify_node(rebuild(node.op, [a, inner_b], dict(node.attrs))))
    return None


@rule("mul")
def _constant_factors(node):
    """c₁·(c₂·x) = (c₁c₂)·x"""
    a, b = node.inputs
    for c1, other in ((a, b), (b, a)):
        v1 = B.const_value(c1)
        if v1 is None or other.op != "mul":
            continue
        for c2, x in (other.inputs, other.inputs[::-1]):
            v2 = B.const_value(c2)
            if v2 is not None and B.const_value(x) is None:
                return simplify_node(B.mul(B.constant(v1 * v2, node.dtype, node.shape), x))
    return None


@rule("mul")
def _minus_one_times(node):
    """(−1)·x = −x"""
    a, b = node.inputs
    for c, x in ((a, b), (b, a)):
        if _is_const(c, -1.0) and c.shape == x.shape:
            return _neg(x)
    return None


@rule("div")
def _logistic_quotients(node):
    """eᵘ/(eᵘ + 1) = σ(u),  1/(eᵘ + 1) = σ(−u)"""
    numerator, denominator = node.inputs
    if denominator.op != "add":
        return None
    p, q = denominator.inputs
    exp = p if _is_const(q, 1.0) else q if _is_const(p, 1.0) else None
    if exp is None or exp.op != "exp":
        return None
    u = exp.inputs[0]
    if numerator is exp:
        return make("logistic", [u])
    if _is_const(numerator, 1.0):
        return make("logistic", [simplify_node(B.neg(u))])
    return None


@rule("div")
def _quotient_of_quotient(node):
    """(a/b)/c = a/(b·c)"""
    a, c = node.inputs
    if a.op == "div":
        return simplify_node(B.div(a.inputs[0], simplify_node(B.mul(a.inputs[1], c))))
    return None


@rule("mul")
def _scaling_of_a_transpose(node):
    """Aᵀ ⊙ S = (A ⊙ Sᵀ)ᵀ for a broadcast S: the scaling runs in A's own layout (rows of
    X scaled by s, not columns of Xᵀ), so a product that reads it transposed reads it
    in place and sees Xᵀ diag(s) X."""
    a, b = node.inputs
    for t, other in ((a, b), (b, a)):
        if t.op == "transpose" and other.op == "broadcast_to" and t.inputs[0].op != "broadcast_to":
            perm = t.attr("perm")
            inverse = tuple(perm.index(k) for k in range(len(perm)))
            scaled = simplify_node(B.mul(t.inputs[0], B.transpose(other, inverse)))
            return B.transpose(scaled, perm)
    return None


# -- sums and differences ----------------------------------------------------------------------
@rule("add")
def _plus_negation(node):
    """a + (−b) = a − b,  (−a) + b = b − a"""
    a, b = node.inputs
    if _negated(b) is not None:
        return simplify_node(B.sub(a, _negated(b)))
    if _negated(a) is not None:
        return simplify_node(B.sub(b, _negated(a)))
    return None


@rule("add")
def _twice(node):
    """x + x = 2·x"""
    a, b = node.inputs
    if a is b:
        return make("mul", [B.constant(2.0, a.dtype, a.shape), a])
    return None


@rule("add", "sub")
def _twice_in_a_chain(node):
    """(a ± b) ± b = a ± 2·b"""
    a, b = node.inputs
    if a.op == node.op and a.inputs[1] is b:
        return simplify_node(rebuild(node.op, [a.inputs[0], simplify_node(
            make("mul", [B.constant(2.0, b.dtype, b.shape), b]))], {}))
    return None


@rule("sub")
def _minus_negation(node):
    """a − (−b) = a + b;  1 − σ(u) = σ(−u)"""
    a, b = node.inputs
    if _negated(b) is not None:
        return simplify_node(B.add(a, _negated(b)))
    if _is_const(a, 1.0) and b.op == "logistic":
        return make("logistic", [_neg(b.inputs[0])])
    return None


# -- exponentials ---------------------------------------------------------------------------------
@rule("exp")
def _softmax_weight(node):
    """e^(a − logaddexp(a, b)) = eᵃ/(eᵃ + eᵇ) = σ(a − b): the derivative of logaddexp
    (and softplus) stays accurate where σ ≈ 1 (the difference form cancels there)."""
    x = node.inputs[0]
    if x.op != "sub" or x.inputs[1].op != "logaddexp":
        return None
    a = x.inputs[0]
    p, q = x.inputs[1].inputs
    if a is p:
        return make("logistic", [simplify_node(B.sub(p, q))])
    if a is q:
        return make("logistic", [simplify_node(B.sub(q, p))])
    return None


# -- reductions ---------------------------------------------------------------------------------
@rule("reduce_sum")
def _sum_of_a_broadcast(node):
    """Σ over axes a broadcast only repeats = the value times the number of repeats."""
    x = node.inputs[0]
    if x.op != "broadcast_to":
        return None
    source = x.inputs[0]
    lead = x.ndim - source.ndim
    axes = node.attr("axes")
    repeated = [k for k in axes if k < lead or (source.shape[k - lead] == 1 and x.shape[k] != 1)]
    if len(repeated) != len(axes):
        return None
    count = symbolic.simplify(symbolic.product([x.shape[k] for k in axes]))
    kept = [d for k, d in enumerate(x.shape) if k not in axes]
    # the source without the repeated axes (its size-1 axes among them), then the kept
    # axes broadcast back where the source had size 1
    inner = B.reshape(source, [d for k, d in enumerate(source.shape) if k + lead not in axes])
    return B.mul(B.broadcast_to(inner, kept), B.dim_value(count, node.dtype))


# -- layout: a negation moves outwards ---------------------------------------------------------
@rule("reshape", "transpose", "broadcast_to")
def _layout_of_negation(node):
    inner = _negated(node.inputs[0])
    if inner is None:
        return None
    return _neg(simplify_node(rebuild(node.op, [inner], dict(node.attrs))))
