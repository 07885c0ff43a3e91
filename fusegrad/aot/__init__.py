"""Ahead-of-time C libraries: `python -m fusegrad build MODULE.py -o OUTDIR`.

`collect` finds and traces a module's annotated compiled functions, `codegen` compiles
their kernels into one object for a target CPU, `csource` writes the header and the
exported C wrappers, `link` drives the system C compiler, and `build` runs the steps.
"""

from .build import BuildResult, build_library
from .collect import BuildError

__all__ = ["BuildError", "BuildResult", "build_library"]
