"""dtype-and-dims annotations: `X: fg.f64["m", "n"]`, `w: fg.f32["n"]`, `b: fg.f64[3]`.

An annotation fixes an argument's dtype and names its dims. Named dims are the
same symbol wherever they appear, and dims with different names are never
assumed equal. Annotations are optional for the JIT and required for AOT builds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .compiler.errors import ShapeError


@dataclass(frozen=True)
class ArrayType:
    dtype: str
    dims: tuple  # str (a dim name) or int (a fixed size)

    def __repr__(self):
        short = {"float32": "f32", "float64": "f64"}[self.dtype]
        return f"fg.{short}[{', '.join(repr(d) for d in self.dims)}]"


class _DTypeFactory:
    def __init__(self, dtype: str):
        self.dtype = dtype

    def __getitem__(self, dims) -> ArrayType:
        if not isinstance(dims, tuple):
            dims = (dims,)
        if dims == ((),):
            dims = ()
        for d in dims:
            if isinstance(d, bool) or not isinstance(d, (str, int, np.integer)):
                raise ShapeError(f"annotation dims must be names (str) or sizes (int), got {d!r}")
            if isinstance(d, str) and not d.isidentifier():
                raise ShapeError(f"annotation dim names must be identifiers, got {d!r}")
            if not isinstance(d, str) and d < 0:
                raise ShapeError(f"annotation sizes must be non-negative, got {d}")
        return ArrayType(self.dtype, tuple(d if isinstance(d, str) else int(d) for d in dims))

    def __repr__(self):
        return f"fg.{ {'float32': 'f32', 'float64': 'f64'}[self.dtype]}"


f32 = _DTypeFactory("float32")
f64 = _DTypeFactory("float64")
