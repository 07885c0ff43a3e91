"""Which compiled functions of a module go into a C library, traced with their annotations.

    module = load_module("model.py")
    entries, skipped = collect(module, "model")   # an `Entry` per annotated compiled function

A function is built when every parameter is annotated (`w: fg.f64["n"]`); its dims are
the annotation's names, so the kernel serves every size and the C function takes each
dim once. A compiled function without any annotation is JIT-only and skipped; one with
some parameters annotated and others not is an error that names them.

C names: a function is exported under the name it has in the module; parameters keep
their Python names, outputs are `value`, `grad_<param>`, `hess_<param>`, `jac_<param>`
(from the labels the transforms attach), or `out` / `out0, out1, …` for a plain
`fg.compile`. A name that is a C or C++ keyword, a C library function, or already taken
in the same signature gets a trailing `_`.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path

from ..annotations import ArrayType
from ..api import CompiledFunction
from ..compiler.errors import FusegradError
from ..compiler.ir import Function
from ..compiler.trace import ArgSpec, OutputTree, trace


class BuildError(FusegradError):
    """An AOT build cannot go on; the message says what to do (one line)."""


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# C99 + C++ keywords and a few macros of the standard headers a caller includes.
C_KEYWORDS = _words(
    """auto break case char const continue default do double else enum extern float for goto
    if inline int long register restrict return short signed sizeof static struct switch
    typedef union unsigned void volatile while _Bool _Complex _Imaginary bool true false
    alignas alignof and and_eq asm bitand bitor catch char16_t char32_t class compl constexpr
    const_cast decltype delete dynamic_cast explicit export friend mutable namespace new
    noexcept not not_eq nullptr operator or or_eq private protected public reinterpret_cast
    static_assert static_cast template this thread_local throw try typeid typename using
    virtual wchar_t xor xor_eq NULL EOF errno assert complex I"""
)
# Functions of libc and libm a kernel name would shadow (the library exports its kernels).
C_LIBRARY_NAMES = _words(
    """abs acos acosh asin asinh atan atan2 atanh cbrt ceil copysign cos cosh erf erfc exp exp2
    expm1 fabs fdim floor fma fmax fmin fmod frexp hypot ilogb ldexp lgamma llrint llround log
    log10 log1p log2 logb lrint lround modf nan nearbyint nextafter pow remainder remquo rint
    round scalbn sin sinh sqrt tan tanh tgamma trunc gamma j0 j1 jn y0 y1 yn sincos exp10 div
    abort atexit atof atoi atol bsearch calloc exit free getenv labs ldiv malloc qsort rand
    realloc srand strtod strtol system memcpy memmove memset memcmp strlen strcmp strcpy printf
    puts putchar fopen fclose main signal raise time clock sleep read write open close select
    poll kill fork wait random"""
)
OUTPUT_PREFIXES = {"grad": "grad_", "hessian": "hess_", "jacobian": "jac_"}


@dataclass(frozen=True)
class Entry:
    """One function of the library: the traced graph and the names of its C signature."""

    c_name: str
    compiled: CompiledFunction
    function: Function
    tree: OutputTree
    dim_names: tuple[str, ...]  # C names of `function.dim_symbols()`, in that order
    input_names: tuple[str, ...]  # C names of the parameters, in order
    output_names: tuple[str, ...]  # C names of the flattened outputs, in order
    annotations: dict

    @property
    def python_name(self) -> str:
        return self.compiled.__name__


def load_module(path: str | Path):
    """Import a Python file as a module (its folder first on sys.path while it imports)."""
    path = Path(path)
    if not path.is_file():
        raise BuildError(f"{path}: no such file; pass the path of a Python module")
    module_name = f"_fusegrad_build_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise BuildError(f"{path}: not a Python module (expected a .py file)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except FusegradError as exc:
        raise BuildError(f"importing {path} failed: {exc}") from exc
    except Exception as exc:  # any error of the user's module, in one line
        raise BuildError(
            f"importing {path} failed: {type(exc).__name__}: {exc}{_user_line(exc, path)}"
        ) from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _user_line(exc: BaseException, path: Path) -> str:
    """` (model.py:12)`: where in the user's file the import failed, if it did there."""
    frame = exc.__traceback__
    line = None
    while frame is not None:
        if Path(frame.tb_frame.f_code.co_filename).resolve() == path.resolve():
            line = frame.tb_lineno
        frame = frame.tb_next
    return f" ({path.name}:{line})" if line is not None else ""


def compiled_functions(module) -> list[tuple[str, CompiledFunction]]:
    """Module-level compiled functions, in definition order (an alias counts once)."""
    found, seen = [], set()
    for name, value in vars(module).items():
        if isinstance(value, CompiledFunction) and id(value) not in seen:
            seen.add(id(value))
            found.append((name, value))
    return found


def read_annotations(compiled: CompiledFunction) -> dict[str, ArrayType]:
    """The parameters' `fg.f64[...]` annotations, also when they are strings
    (`from __future__ import annotations`)."""
    annotations = dict(compiled.annotations)
    if len(annotations) < len(compiled.param_names):
        try:
            hints = inspect.get_annotations(inspect.unwrap(compiled.fn), eval_str=True)
        except Exception:  # noqa: BLE001 - unevaluable strings count as missing
            hints = {}
        for name in compiled.param_names:
            if isinstance(hints.get(name), ArrayType):
                annotations.setdefault(name, hints[name])
    return annotations


def collect(module, library: str) -> tuple[list[Entry], list[str]]:
    """The entries of the library built from `module`, and the JIT-only functions it
    skipped (no annotation at all), as `name(params)` (see the module doc)."""
    source = getattr(module, "__file__", None) or module.__name__
    candidates = compiled_functions(module)
    if not candidates:
        raise BuildError(
            f"{Path(source).name} defines no compiled function; decorate one with "
            "@fg.compile, @fg.compile_grad or @fg.compile_hessian at module level"
        )
    entries, skipped = [], []
    for attribute, compiled in candidates:
        annotations = read_annotations(compiled)
        missing = [p for p in compiled.param_names if p not in annotations]
        if missing and len(missing) == len(compiled.param_names) and compiled.param_names:
            skipped.append(f"{attribute}({', '.join(missing)})")
            continue
        if missing:
            raise BuildError(
                f"{attribute}: parameter{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(m) for m in missing)} not annotated; a C library needs each "
                f'parameter\'s dtype and dims, e.g. {missing[0]}: fg.f64["n"]'
            )
        entries.append((attribute, compiled, annotations))
    if not entries:
        raise BuildError(
            f"{Path(source).name}: no compiled function has annotated parameters "
            f"({'; '.join(skipped)}); annotate each parameter with its dtype and dims, "
            'e.g. w: fg.f64["n"], X: fg.f64["m", "n"]'
        )
    for attribute, _, _ in entries:
        if not attribute.isascii():
            raise BuildError(f"{attribute}: C needs ASCII names; bind the function to another")
    c_names = _function_names([a for a, _, _ in entries], library)
    built = [
        _entry(c_name, compiled, annotations)
        for c_name, (_, compiled, annotations) in zip(c_names, entries)
    ]
    return built, skipped


def _function_names(attributes: list[str], library: str) -> list[str]:
    reserved = {f"{library}_strerror", f"{library}_set_num_threads", f"{library}_get_num_threads"}
    names = []
    for attribute in attributes:
        if attribute in reserved or attribute.startswith((f"{library}_k_", f"{library}_fg_")):
            raise BuildError(
                f"{attribute}: the name is taken by the library's own functions; "
                "bind the function to another name"
            )
        names.append(_c_identifier(attribute, set(names)))
    return names


def _c_identifier(name: str, taken: set[str]) -> str:
    while name in C_KEYWORDS or name in C_LIBRARY_NAMES or name in taken:
        name += "_"
    return name


def _entry(c_name: str, compiled: CompiledFunction, annotations) -> Entry:
    specs = []
    for param in compiled.param_names:
        annotation = annotations[param]
        named = tuple(d for d in annotation.dims if isinstance(d, str))
        specs.append(ArgSpec(param, annotation.dtype, annotation.dims, named))
    try:
        function, tree = trace(compiled.fn, specs, name=compiled.__name__)
    except FusegradError as exc:
        raise BuildError(f"{c_name}: tracing with the annotated shapes failed: {exc}") from exc
    for name in list(compiled.param_names) + function.dim_symbols():
        if not name.isascii():
            raise BuildError(f"{c_name}: {name!r} is not an ASCII name, which C needs; rename it")
    taken: set[str] = set()
    inputs = [_c_identifier(p, taken) for p in compiled.param_names]
    taken.update(inputs)
    outputs = []
    for raw in _output_labels(compiled, len(function.outputs)):
        outputs.append(_c_identifier(raw, taken))
        taken.add(outputs[-1])
    dims = []
    for symbol in function.dim_symbols():
        dims.append(_c_identifier(symbol, taken))
        taken.add(dims[-1])
    return Entry(
        c_name, compiled, function, tree, tuple(dims), tuple(inputs), tuple(outputs), annotations
    )


def _output_labels(compiled: CompiledFunction, count: int) -> list[str]:
    labels = getattr(compiled.fn, "fusegrad_labels", None)
    if labels is None or len(labels) != count:
        return ["out"] if count == 1 else [f"out{k}" for k in range(count)]
    names = []
    for k, label in enumerate(labels):
        if isinstance(label, str):
            names.append("value")
        elif isinstance(label, tuple) and len(label) == 2 and isinstance(label[1], str):
            kind, param = label
            names.append(OUTPUT_PREFIXES.get(kind, f"{kind}_") + param)
        else:
            names.append(f"out{k}")
    return names
