"""The C side of a library: its header and the exported wrappers around the kernels.

For each entry the header declares

    int loss(int64_t n, int64_t m, const double *w, const double *X, const double *y,
             double *value, double *grad_w, double *hess_w);

with a comment that gives the Python source line, what the outputs are (the
derivative formulas of `CompiledFunction.explain`), the dims, every buffer's shape
and the status codes. The API file (`<library>_api.c`) defines these functions: each
checks that no dim is negative (status 1) and the relations between dims the traced
program needs (`function.checks`, status 3), then calls the kernel's hidden entry point
`<library>_k_<name>`. It also defines `<library>_strerror` and the thread-count
functions of the library's pool. It is compiled with hidden visibility, and only the
declarations of the header are made visible.
"""

from __future__ import annotations

import inspect
import io
import tokenize
from pathlib import Path

import numpy as np

from .. import __version__
from ..compiler import symbolic
from ..compiler.c_dims import c_dim, dim_helpers
from ..compiler.symbolic import Dim
from .codegen import CompiledKernel, Target
from .collect import Entry

C_TYPES = {"float64": "double", "float32": "float", "bool": "uint8_t"}
#: Status codes of every function of a library (the kernel's and the wrapper's).
STATUSES = (
    (0, "OK", "ok"),
    (1, "ERR_NEGATIVE_DIM", "a dimension is negative"),
    (2, "ERR_NO_MEMORY", "out of memory while allocating scratch buffers"),
    (3, "ERR_INCONSISTENT_DIMS", "inconsistent dimensions"),
    (4, "ERR_BLAS_DIM", "a matrix dimension exceeds 2**31 - 1, the limit of the 32-bit BLAS"),
)


def status_macro(library: str, code: int) -> str:
    return f"{library.upper()}_{STATUSES[code][1]}"


# -- C expressions of dims ----------------------------------------------------------------
def doc_dim(dim, names: dict[str, str]) -> str:
    """A dim as the header's comments show it (`n`, `n - 1`, `max(0, n - 1)`)."""
    if isinstance(dim, int):
        return str(dim)
    renamed = dim.substitute({s: Dim.symbol(c) for s, c in names.items() if s != c})
    return symbolic.format_dim(symbolic.simplify(renamed))


def doc_shape(shape, names) -> str:
    if not shape:
        return "[] (a scalar: one element)"
    return "[" + ", ".join(doc_dim(d, names) for d in shape) + "]"


# -- the header ---------------------------------------------------------------------------
def signature(entry: Entry) -> str:
    """`int name(int64_t n, …, const double *w, …, double *value, …)`."""
    params = [f"int64_t {d}" for d in entry.dim_names]
    for name, param in zip(entry.input_names, entry.function.params):
        params.append(f"const {C_TYPES[param.node.dtype]} *{name}")
    for name, node in zip(entry.output_names, entry.function.outputs):
        params.append(f"{C_TYPES[node.dtype]} *{name}")
    return f"int {entry.c_name}({', '.join(params) or 'void'})"


def _wrap_signature(text: str, width: int = 96) -> str:
    """Break a declaration after commas so that lines stay under `width` columns."""
    head, _, rest = text.partition("(")
    indent = " " * (len(head) + 1)
    lines, line = [], head + "("
    for k, part in enumerate(rest.split(", ")):
        piece = part if k == len(rest.split(", ")) - 1 else part + ","
        if len(line) + len(piece) + 1 > width and not line.endswith("("):
            lines.append(line.rstrip())
            line = indent
        line += piece + " "
    lines.append(line.rstrip())
    return "\n".join(lines)


def _comment(text: str) -> str:
    return text.replace("*/", "* /")


def source_line(entry: Entry) -> str:
    """`model.py:12: def loss(w: fg.f64["n"], …):` where the Python function is defined."""
    fn = inspect.unwrap(entry.compiled.fn)
    try:
        lines, number = inspect.getsourcelines(fn)
        path = Path(inspect.getsourcefile(fn) or "?").name
    except (OSError, TypeError):
        return "(source not available)"
    for offset, line in enumerate(lines):
        if line.lstrip().startswith(("def ", "async def ")) or "lambda" in line:
            return f"{path}:{number + offset}: {_without_comment(line)}"
    return f"{path}:{number}: {_without_comment(lines[0])}"


def _without_comment(line: str) -> str:
    """A line of Python without its trailing `# comment` (tokenized: not one in a string)."""
    try:
        for token in tokenize.generate_tokens(io.StringIO(line).readline):
            if token.type == tokenize.COMMENT:
                return line[: token.start[1]].strip()
    except (tokenize.TokenError, SyntaxError):
        pass  # an unfinished line (a signature over several lines) past its last token
    return line.strip()


def explain_text(entry: Entry) -> str:
    """What the function returns, from `CompiledFunction.explain` on small example arrays."""
    sizes = {symbol: 2 + k for k, symbol in enumerate(entry.function.dim_symbols())}
    examples = []
    for param in entry.compiled.param_names:
        annotation = entry.annotations[param]
        shape = tuple(sizes[d] if isinstance(d, str) else d for d in annotation.dims)
        examples.append(np.zeros(shape, dtype=annotation.dtype))
    try:
        return entry.compiled.explain(*examples)
    except Exception as exc:  # noqa: BLE001 - the header still gets the signature
        return f"(explain() failed: {type(exc).__name__}: {exc})"


def function_comment(entry: Entry, kernel: CompiledKernel, library: str) -> str:
    names = dict(zip(entry.function.dim_symbols(), entry.dim_names))
    lines = [f"{entry.c_name} -- Python {source_line(entry)}", ""]
    lines += ["    " + line for line in explain_text(entry).splitlines()]
    lines += ["", "(the first lines are the outputs below, in order)", ""]
    if entry.dim_names:
        lines.append(f"dims:    {', '.join(entry.dim_names)} (each >= 0)")
    for k, (name, param) in enumerate(zip(entry.input_names, entry.function.params)):
        label = "inputs: " if k == 0 else "        "
        lines.append(f"{label} {name} {doc_shape(param.node.shape, names)}")
    for k, (name, node) in enumerate(zip(entry.output_names, entry.function.outputs)):
        label = "outputs:" if k == 0 else "        "
        lines.append(f"{label} {name} {doc_shape(node.shape, names)}")
    for check in entry.function.checks:
        relation = "==" if check.kind == "eq" else ">="
        lines.append(
            f"needs:   {doc_dim(check.left, names)} {relation} {doc_dim(check.right, names)} "
            f"({check.where})"
        )
    codes = [0]
    codes += [1] if entry.dim_names else []
    codes += [2] if kernel.uses_scratch else []
    codes += [3] if entry.function.checks else []
    codes += [4] if kernel.uses_blas else []
    lines.append("returns: " + ", ".join(f"{status_macro(library, c)} ({c})" for c in codes))
    body = [_comment(line).rstrip() for line in lines]
    return (
        "/* "
        + body[0]
        + "".join("\n *" + (" " + line if line else "") for line in body[1:])
        + "\n */"
    )


def header(library: str, source: str, entries, kernels, target: Target, blas: str | None) -> str:
    guard = f"{library.upper()}_H"
    statuses = "\n".join(
        f"#define {status_macro(library, code):<40} {code} /* {text} */"
        for code, _, text in STATUSES
    )
    blas_line = f"BLAS: {blas}" if blas else "BLAS: none (self-contained generated loops)"
    blas_threads = ""
    if blas:
        blas_threads = (
            "\n * Matrix products run on the same pool, one BLAS call per piece of a product\n"
            " * (bands of the result, or parts of the inner dim summed in a fixed order):\n"
            " * run with OPENBLAS_NUM_THREADS=1 (or openblas_set_num_threads(1)) so that\n"
            " * OpenBLAS starts no threads of its own inside them."
        )
    declarations = []
    for entry, kernel in zip(entries, kernels):
        declarations.append(function_comment(entry, kernel, library))
        declarations.append(_wrap_signature(signature(entry)) + ";")
        declarations.append("")
    return f"""\
/* {library}.h -- fusegrad {__version__} kernels built from {source}; generated, do not edit.
 *
 * Every function computes a Python function and its derivatives in one call:
 *   - arguments: the dims (int64_t) first, in order of first appearance in the
 *     Python parameters, then the inputs in parameter order, then the outputs;
 *   - arrays: C-contiguous (row-major) buffers of the shapes given below, in the
 *     dims; a scalar output is one element. Outputs are written, never read, and
 *     must not overlap the inputs or each other. The shapes are the caller's
 *     promise: the library cannot check the sizes of the buffers it is given;
 *   - returns {status_macro(library, 0)} (0) or one of the statuses below, which
 *     {library}_strerror(status) describes; statuses 1 and 3 are found before
 *     anything is written.
 *
 * Threads: the functions are reentrant and thread-safe (no global mutable state
 * besides the thread pool below). Large loops run on one pthread pool per process,
 * shared by all functions of this library (another fusegrad library has its own):
 * created on first use with $FUSEGRAD_NUM_THREADS threads (read once; default: the
 * number of online CPUs), resizable with {library}_set_num_threads. The pool runs
 * one parallel loop at a time: a call that finds it busy (another thread's call)
 * runs its loop on the calling thread, with the same results. Its worker threads
 * live until the process exits; a fork()ed child starts a fresh pool. Results do
 * not depend on the thread count.{blas_threads}
 * Target CPU: {target.name} ({target.cpu}). {blas_line}.
 */
#ifndef {guard}
#define {guard}

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

/* Status codes returned by every function. */
{statuses}

/* A static, human-readable message for a status code (never NULL). */
const char *{library}_strerror(int status);

/* Thread count of the library's pool for later calls (clamped to 1..1024). */
void {library}_set_num_threads(int n);
int {library}_get_num_threads(void);

{chr(10).join(declarations)}
#ifdef __cplusplus
}}
#endif

#endif /* {guard} */
"""


# -- the exported wrappers ----------------------------------------------------------------
def _kernel_prototype(entry: Entry, symbol: str) -> str:
    types = ["int64_t"] * len(entry.dim_names)
    types += [f"const {C_TYPES[p.node.dtype]} *" for p in entry.function.params]
    types += [f"{C_TYPES[o.dtype]} *" for o in entry.function.outputs]
    return f"int {symbol}({', '.join(types) or 'void'});"


def dim_checks(library: str, entry: Entry, names: dict) -> list[str]:
    """The C statements that return status 1 for a negative dim and 3 for dims that
    break one of the function's checks (`names`: dim symbol → C parameter)."""
    lines = []
    if entry.dim_names:
        negative = " || ".join(f"{d} < 0" for d in entry.dim_names)
        lines.append(f"    if ({negative})\n        return {status_macro(library, 1)};")
    for check in entry.function.checks:
        relation = "!=" if check.kind == "eq" else "<"
        left, right = c_dim(check.left, names), c_dim(check.right, names)
        lines.append(
            f"    if ({left} {relation} {right}) /* {_comment(check.where)} */\n"
            f"        return {status_macro(library, 3)};"
        )
    return lines


def _wrapper(entry: Entry, kernel: CompiledKernel, library: str) -> str:
    names = dict(zip(entry.function.dim_symbols(), entry.dim_names))
    body = dim_checks(library, entry, names)
    args = list(entry.dim_names) + list(entry.input_names) + list(entry.output_names)
    body.append(f"    return {kernel.symbol}({', '.join(args)});")
    return signature(entry) + "\n{\n" + "\n".join(body) + "\n}\n"


def api_source(library: str, entries, kernels) -> str:
    prototypes = "\n".join(_kernel_prototype(e, k.symbol) for e, k in zip(entries, kernels))
    wrappers = "\n".join(_wrapper(e, k, library) for e, k in zip(entries, kernels))
    cases = "\n".join(f'    case {code}:\n        return "{text}";' for code, _, text in STATUSES)
    return f"""\
/* {library}_api.c -- the exported functions of lib{library}; generated by fusegrad. */
#include <stdint.h>

#pragma GCC visibility push(default)
#include "{library}.h"
#pragma GCC visibility pop

/* The kernels (hidden, in the object LLVM compiled) and the runtime's thread count. */
{prototypes}
void {library}_fg_set_num_threads(int n);
int {library}_fg_get_num_threads(void);

/* Python's floor division and max/min of dims, for the checks below. */
{dim_helpers()}
const char *{library}_strerror(int status)
{{
    switch (status) {{
{cases}
    default:
        return "unknown status";
    }}
}}

void {library}_set_num_threads(int n)
{{
    {library}_fg_set_num_threads(n);
}}

int {library}_get_num_threads(void)
{{
    return {library}_fg_get_num_threads();
}}

{wrappers}"""
