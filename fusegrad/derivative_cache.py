"""Hessians and Jacobians kept in the on-disk cache, so a new process does not derive
them again.

    gradient, hessian = derived("gradient and Hessian", [value], [x], build)

Tracing a Hessian builds the function's own graph, then derives from it: reverse mode,
simplification, then a batch of forward-mode tangents. The derivation is most of the
trace (W5's: ~1.9 of 2.8 ms in a fresh process), and it depends on nothing but the
graph it starts from. So its result is stored next to the compiled kernels
(runtime/cache.py), keyed by:

- the kind of derivative (with its options),
- the content hashes of the nodes it starts from (`Node.digest`: the function's graph,
  and the parameters it is taken with respect to),
- the state of the trace's dim unifier (dims merged and checks recorded so far: the
  shape rules of the new nodes read it),
- the cache's environment: the fusegrad, LLVM and compiler-source fingerprint.

A derivation that merges dims or records checks of its own is not stored (its entry
could not replay them). The graph comes back node by node through `ir.from_records`,
found in or added to the hash-consed table: one file read and ~130 node look-ups,
~0.5 ms in a fresh process (plus the cache environment's 0.6 ms, which the kernel's
key needs anyway). Warm first calls of W4 and W5 measured 0.6–1.5 ms faster with it,
side by side. Gradients are not cached: reverse mode alone derives in about the time
an entry loads (W1, W2, W3, W6: the same first call with and without, within the
noise). `FUSEGRAD_CACHE=0` turns this off with the kernel cache.
"""

from __future__ import annotations

import pickle

from .compiler import shapes
from .compiler.ir import Node, from_records, to_records, toposort
from .runtime import cache

#: What this process did with derivative entries (for tests and benchmarks).
stats = {"hits": 0, "misses": 0, "stores": 0, "bad_entries": 0}


def derived(kind: str, outputs: list[Node], wrt: list[Node], build) -> list:
    """`build()`'s list of nodes (or None): the derivative of kind `kind` of `outputs`
    with respect to `wrt`, from the cache where an earlier process derived it."""
    if not cache.enabled():
        return list(build())
    state = shapes.unifier_state()
    key = cache.entry_key(
        "derivative", kind, repr([n.digest for n in outputs]), repr([n.digest for n in wrt]),
        state,
    )
    payload = cache.load(key, stats)
    if payload is not None:
        try:
            return from_records(pickle.loads(payload))
        except Exception:  # noqa: BLE001 - an entry that does not load is derived again
            stats["bad_entries"] += 1
    nodes = list(build())
    if shapes.unifier_state() == state and not _has_stand_ins(nodes):
        cache.store(key, pickle.dumps(to_records(nodes), protocol=pickle.HIGHEST_PROTOCOL), stats)
    return nodes


def _has_stand_ins(nodes) -> bool:
    """Whether a batching stand-in (a param of index -1, named per process) is left."""
    graph = toposort([n for n in nodes if n is not None])
    return any(node.op == "param" and node.attr("index") == -1 for node in graph)
