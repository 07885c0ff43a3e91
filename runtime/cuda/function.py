"""CudaCompiledFunction: `fg.compile(f, target="cuda")`.

The CPU CompiledFunction with two differences: a specialization is a CudaKernel
(runtime/cuda/launcher.py), and arguments may be device arrays. A device array is seen
by tracing and by the specialization key as a zero-stride host stand-in of its shape and
dtype (no copy, no memory), and its device memory is passed to the kernel directly.
"""

from __future__ import annotations

from ...api import CompiledFunction, _specialization_key
from .arrays import device_view
from .launcher import build_cuda_kernel, stand_in


class CudaCompiledFunction(CompiledFunction):
    target = "cuda"

    def __call__(self, *args, **kwargs):
        if kwargs or len(args) != len(self.param_names):
            args = self._bind_arguments(args, kwargs)
        views = [device_view(name, value) for name, value in zip(self.param_names, args)]
        arrays = self._as_arrays(args, views)
        key = _specialization_key(arrays)
        kernel = self._specializations.get(key)
        if kernel is None:
            kernel = self._specialize(key, arrays)
        values = [array if view is None else view for array, view in zip(arrays, views)]
        return kernel.call(values)

    def _as_arrays(self, args, views=None):
        """Host arrays as the CPU path makes them; device arrays as stand-ins."""
        if views is None:
            views = [device_view(name, value) for name, value in zip(self.param_names, args)]
        args = [value if view is None else stand_in(view) for value, view in zip(args, views)]
        return super()._as_arrays(args)

    def _specialize(self, key, arrays):
        with self._lock:
            kernel = self._specializations.get(key)
            if kernel is None:
                function, tree = self.trace(*arrays)
                kernel = build_cuda_kernel(function, tree)
                self._specializations[key] = kernel
        return kernel

    def __repr__(self):
        return f"<fusegrad compiled function {self.__name__} (target='cuda')>"
