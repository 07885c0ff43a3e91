"""`fg.compile` and `fg.compile_grad`: traced, compiled, cached, called.

A `CompiledFunction` traces its Python function once per *specialization*
(the arguments' dtypes, ranks and which dims are 1), lowers the graph to one
native kernel and keeps it. Every call whose arguments share a specialization
reuses that kernel, for any sizes.
"""

from __future__ import annotations

import functools
import inspect
import threading

import numpy as np

from .annotations import ArrayType
from .compiler.errors import DTypeError, FusegradError, ShapeError
from .compiler.trace import ArgSpec, trace
from .transforms import parameter_names, value_and_grad

_FLOAT_KINDS = "f"


TARGETS = ("cpu", "cuda")


class CompiledFunction:
    """A Python function over arrays, compiled to native code on first use."""

    target = "cpu"  # runtime/cuda/function.py: the subclass for target="cuda"

    def __init__(self, fn, name: str | None = None):
        self.fn = fn
        self.__name__ = name or getattr(fn, "__name__", "function")
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn
        self.param_names = parameter_names(fn)
        self.signature = inspect.signature(fn)
        self.annotations = _read_annotations(fn, self.param_names)
        self._specializations: dict = {}
        # The C binder of each specialization: None where the kernel has none, or where
        # it would take arguments of another specialization (see `_binder_key`).
        self._binders: dict = {}
        self._last_binder = None
        self._lock = threading.Lock()

    # -- calling --------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        # Fastest path: the C binder of the specialization used last takes arguments
        # exactly like it (ndarrays of its dtypes, ranks and size-1 dims, C order) and
        # makes the whole call; for any others it returns NotImplemented.
        binder = self._last_binder
        if binder is not None and not kwargs:
            result = binder(*args)
            if result is not NotImplemented:
                return result
        # Fast path: NumPy arrays of a specialization seen before (so already checked).
        if not kwargs and len(args) == len(self.param_names):
            key = _ndarray_key(args)
            if key is not None:
                compiled = self._specializations.get(key)
                if compiled is not None:
                    self._last_binder = self._binders[key]
                    return compiled.call(args)
        if kwargs or len(args) != len(self.param_names):
            args = self._bind_arguments(args, kwargs)
        arrays = self._as_arrays(args)
        key = _specialization_key(arrays)
        compiled = self._specializations.get(key)
        if compiled is None:
            compiled = self._specialize(key, arrays)
        self._last_binder = self._binders[key]
        return compiled.call(arrays)

    def _bind_arguments(self, args, kwargs):
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.__name__}(): {exc}") from None
        bound.apply_defaults()
        return tuple(bound.arguments[name] for name in self.param_names)

    def _as_arrays(self, args):
        arrays = []
        for name, value in zip(self.param_names, args):
            arrays.append(_as_array(name, value, self.annotations.get(name)))
        # Python numbers passed as arguments are weak: they follow the arrays' dtype.
        array_dtypes = {a.dtype for a, v in zip(arrays, args) if isinstance(v, np.ndarray)}
        if array_dtypes == {np.dtype("float32")}:
            arrays = [
                a.astype(np.float32) if not isinstance(v, np.ndarray) and a.dtype.kind == "f" else a
                for a, v in zip(arrays, args)
            ]
        return arrays

    # -- compiling --------------------------------------------------------------
    def _specialize(self, key, arrays):
        with self._lock:
            compiled = self._specializations.get(key)
            if compiled is None:
                function, tree = self.trace(*arrays)
                from .runtime.kernel import build_kernel

                compiled = build_kernel(function, tree)
                binder = compiled.binder if _binder_key(compiled.function) == key else None
                self._binders[key] = binder
                self._specializations[key] = compiled
        return compiled

    def trace(self, *args):
        """The graph IR of this function for arguments like `args` (arrays or shapes)."""
        arrays = self._as_arrays(args)
        specs = [
            _arg_spec(name, array, self.annotations.get(name))
            for name, array in zip(self.param_names, arrays)
        ]
        return trace(self.fn, specs, name=self.__name__)

    def lower(self, *args):
        """The traced graph for these arguments, printable (`print(f.lower(x))`)."""
        return self.trace(*args)[0]

    def kernel(self, *args):
        """The compiled kernel for arguments like these (shows `.llvm_ir`, `.program`)."""
        arrays = self._as_arrays(args)
        key = _specialization_key(arrays)
        return self._specializations.get(key) or self._specialize(key, arrays)

    def explain(self, *args, latex: bool = False) -> str:
        """What the kernel for arguments like `args` computes, in matrix notation, e.g.
        for `compile_grad(logistic)`: `∇_w = −Xᵀ (y ⊙ σ(u))` with u = −y ⊙ X w. It is the
        simplified graph the kernel is compiled from; `latex=True` gives LaTeX."""
        from .compiler.explain import explain
        from .compiler.simplify import simplify

        function, _ = self.trace(*args)
        labels = getattr(self.fn, "fusegrad_labels", None)
        if labels is None:
            name = "f" if self.__name__.startswith("<") else self.__name__
            labels = [name] if len(function.outputs) == 1 else []
        return explain(simplify(function), labels, latex=latex)

    def cuda_source(self, *args) -> str:
        """The CUDA C that `target="cuda"` generates for arguments like `args` (one
        translation unit; rendering it needs no GPU)."""
        from .runtime.cuda.launcher import build_cuda_kernel

        return build_cuda_kernel(*self.trace(*args)).source

    @property
    def cache_size(self) -> int:
        """Number of compiled specializations (dtypes, ranks, size-1 dims)."""
        return len(self._specializations)

    def __repr__(self):
        return f"<fusegrad compiled function {self.__name__}>"


def _specialization_key(arrays) -> tuple:
    """What a trace depends on: each argument's dtype and which of its dims are 1."""
    return tuple(
        (a.dtype.char, tuple([d == 1 for d in a.shape]) if 1 in a.shape else a.ndim)
        for a in arrays
    )


def _binder_key(function) -> tuple:
    """The specialization key of the arguments a kernel's C binder accepts: its parameters'
    dtypes and ranks, with size 1 exactly on the axes of constant size 1."""
    key = []
    for param in function.params:
        ones = tuple([isinstance(d, int) and d == 1 for d in param.node.shape])
        key.append((np.dtype(param.node.dtype).char, ones if any(ones) else len(ones)))
    return tuple(key)


def _ndarray_key(args):
    """`_specialization_key` when every argument is exactly an ndarray, else None
    (written as one loop: this runs on every call)."""
    key = []
    for a in args:
        if type(a) is not np.ndarray:
            return None
        shape = a.shape
        key.append((a.dtype.char, tuple([d == 1 for d in shape]) if 1 in shape else len(shape)))
    return tuple(key)


def _read_annotations(fn, names) -> dict[str, ArrayType]:
    try:
        hints = inspect.get_annotations(fn, eval_str=False)
    except Exception:  # noqa: BLE001 - annotations are optional
        hints = getattr(fn, "__annotations__", {})
    return {n: hints[n] for n in names if isinstance(hints.get(n), ArrayType)}


def _as_array(name: str, value, annotation: ArrayType | None) -> np.ndarray:
    if value is None:
        raise FusegradError(f"argument {name!r} is None; expected an array")
    if isinstance(value, np.ndarray):
        array = value
    elif isinstance(value, (bool, int, float, np.number, np.bool_, list, tuple)):
        array = np.asarray(value)
    else:
        try:
            array = np.asarray(value)
        except Exception as exc:  # noqa: BLE001
            raise DTypeError(f"argument {name!r}: cannot convert {type(value).__name__} to an array") from exc
    kind = array.dtype.kind
    if kind == "c":
        raise DTypeError(f"argument {name!r} is complex ({array.dtype}); fusegrad computes with real float32/float64")
    if kind not in "biuf":
        raise DTypeError(
            f"argument {name!r} has dtype {array.dtype}; expected a float32 or float64 array"
        )
    if annotation is not None:
        if array.dtype.name != annotation.dtype:
            if kind == "f" and isinstance(value, np.ndarray):
                raise DTypeError(
                    f"argument {name!r} is annotated {annotation!r} but has dtype {array.dtype}"
                )
            array = array.astype(annotation.dtype)
        if array.ndim != len(annotation.dims):
            raise ShapeError(
                f"argument {name!r} is annotated {annotation!r} ({len(annotation.dims)}-D) "
                f"but has shape {array.shape}"
            )
    elif kind in "iu" or array.dtype.name in ("float16", "longdouble", "float128"):
        array = array.astype(np.float64)
    return array


def _arg_spec(name: str, array: np.ndarray, annotation: ArrayType | None) -> ArgSpec:
    dims = []
    named = []
    for axis, size in enumerate(array.shape):
        declared = annotation.dims[axis] if annotation is not None else None
        if isinstance(declared, int):
            dims.append(declared)
        elif size == 1:
            dims.append(1)  # traced as a broadcastable 1 (size-1 dims are specialized)
        elif isinstance(declared, str):
            dims.append(declared)
            named.append(declared)
        else:
            dims.append(f"{name}_{axis}")
    return ArgSpec(name, array.dtype.name, tuple(dims), tuple(named))


def compile(fn=None, *, name: str | None = None, target: str = "cpu"):
    """Compile a traceable function returning an array or a tuple of arrays.

    `target`: "cpu" (native code for this machine) or "cuda" (CUDA C compiled with
    NVRTC for the GPU; see runtime/cuda/)."""
    if target not in TARGETS:
        raise FusegradError(f"target must be one of {TARGETS}, got {target!r}")
    if fn is None:
        return functools.partial(compile, name=name, target=target)
    if isinstance(fn, CompiledFunction):
        if fn.target == target:
            return fn
        fn = fn.fn
    cls = CompiledFunction
    if target == "cuda":
        from .runtime.cuda.function import CudaCompiledFunction as cls
    compiled = cls(fn, name=name)
    functools.update_wrapper(compiled, fn, updated=())
    return compiled


def compile_grad(fn=None, *, wrt=0, target: str = "cpu"):
    """Compile `f` into a kernel returning `(value, gradient)`.

    `wrt` names the parameter(s) to differentiate by name or position; a single
    one gives `(value, grad)`, a tuple gives `(value, (grad_1, grad_2, ...))`.
    `compile_grad(f, wrt) == compile(value_and_grad(f, wrt))`; `target` as in `compile`.
    """
    if target not in TARGETS:
        raise FusegradError(f"target must be one of {TARGETS}, got {target!r}")
    if fn is None:
        return functools.partial(compile_grad, wrt=wrt, target=target)
    return compile(
        value_and_grad(fn, wrt=wrt), name=getattr(fn, "__name__", None), target=target
    )
