"""Cut a module's LLVM IR text into parts that LLVM can compile at the same time.

    parts = split_module(llvm_ir)   # [llvm_ir of one part, ...], the largest first

LLVM optimizes and generates code for one module on one thread, and that is most of a
kernel's first call (W3: ~110 of ~145 ms). A kernel's module is a handful of functions
that do not inline into each other: the entry point (and its packed twin, which calls
it) and the outlined body of each parallel loop, which the entry point only passes by
address to `fg_parallel_for`. Each of those is a *root*; a part is a root with the
internal functions it calls (the always-inline math, the loop body of an outlined
loop), copied into every part that calls them. Roots that call each other directly
share a part. A root used in another part than its own (by address) becomes external
in its part and is declared in the others; the execution engine links the parts'
object files. Everything else at the top level (declarations, internal constant
tables, loop metadata, the triple) is copied into every part; copies a part does not
use are dropped by global dead code elimination.

The text is the renderer's (llvmlite.ir): each definition starts with a line
`define [internal] TYPE @NAME(ARGS) ATTRS` and ends with a line `}`. Text that does
not look like that is returned whole, as one part.
"""

from __future__ import annotations

import re

#: A definition's first line: ("internal " or None, the function's name as written).
DEFINITION = re.compile(r'^define (internal )?[^@]*@("[^"]+"|[\w.$-]+)\(', re.MULTILINE)
_REFERENCE = re.compile(r'@("[^"]+"|[\w.$-]+)')


def split_module(llvm_ir: str) -> list[str]:
    """The module as parts to compile separately and link (one part if it has one root)."""
    cut = _definitions(llvm_ir)
    if cut is None:
        return [llvm_ir]
    top_level, definitions = cut
    internal = {name for name, text in definitions.items() if text.startswith("define internal")}
    references = {name: _referenced(text, definitions) for name, text in definitions.items()}
    calls = {
        name: {ref for ref in refs if f"@{ref}(" in _body(definitions[name])}
        for name, refs in references.items()
    }
    taken = {ref for name in definitions for ref in references[name] - calls[name]}
    roots = [name for name in definitions if name not in internal or name in taken]
    groups = _group_roots(roots, calls)
    if len(groups) < 2:
        return [llvm_ir]
    parts = []
    for group in groups:
        members = _with_callees(group, calls, internal, set(roots))
        texts = []
        used = set()
        for name in members:
            text = definitions[name]
            if name in roots and name in internal:
                text = text.replace("define internal ", "define ", 1)  # linked by name
            texts.append(text)
            used |= references[name]
        declarations = [_declaration(definitions[name]) for name in used - set(members)]
        parts.append("\n".join([top_level, *declarations, "", "\n\n".join(texts), ""]))
    return sorted(parts, key=len, reverse=True)  # the longest is (roughly) the slowest


def _definitions(llvm_ir: str):
    """(the top-level text that is not a definition, {name: definition text}), or None."""
    lines = llvm_ir.split("\n")
    top_level, definitions = [], {}
    i = 0
    while i < len(lines):
        match = DEFINITION.match(lines[i])
        if match is None:
            top_level.append(lines[i])
            i += 1
            continue
        try:
            end = lines.index("}", i)
        except ValueError:
            return None
        definitions[match.group(2)] = "\n".join(lines[i : end + 1])
        i = end + 1
    return "\n".join(top_level), definitions


def _body(definition: str) -> str:
    return definition.split("\n", 1)[1] if "\n" in definition else ""


def _referenced(definition: str, definitions: dict) -> set[str]:
    """The module's functions that a definition's body names (calls or addresses)."""
    return {name for name in _REFERENCE.findall(_body(definition)) if name in definitions}


def _group_roots(roots: list[str], calls: dict) -> list[list[str]]:
    """Roots in groups: roots that call each other directly stay together (a call across
    parts could not be inlined)."""
    groups: list[list[str]] = []
    for root in roots:
        linked = [g for g in groups if any(root in calls[r] or r in calls[root] for r in g)]
        merged = [root]
        for group in linked:
            merged = group + merged
            groups.remove(group)
        groups.append(merged)
    return groups


def _with_callees(group: list[str], calls: dict, internal: set, roots: set) -> list[str]:
    """The group's functions and, transitively, the internal non-root functions they call."""
    members, pending = [], list(group)
    while pending:
        name = pending.pop(0)
        if name in members:
            continue
        members.append(name)
        pending += [c for c in sorted(calls[name]) if c in internal and c not in roots]
    return members


def _declaration(definition: str) -> str:
    """`declare TYPE @NAME(ARGS)` from a definition's first line (no attributes)."""
    line = definition.split("\n", 1)[0]
    match = DEFINITION.match(line)
    depth = 0
    for position in range(match.end() - 1, len(line)):
        depth += {"(": 1, ")": -1}.get(line[position], 0)
        if depth == 0:
            break
    head = line[: position + 1]
    return "declare " + head[len("define ") :].removeprefix("internal ")
