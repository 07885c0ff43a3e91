"""The error classes every stage raises; `fusegrad` re-exports them."""


class FusegradError(Exception):
    """Base class of every error fusegrad raises on purpose."""


class ShapeError(FusegradError, ValueError):
    """Shapes or dims that do not fit: at trace time or when called."""


class DTypeError(FusegradError, TypeError):
    """An unsupported or inconsistent dtype."""


class TraceError(FusegradError, TypeError):
    """A Python construct or NumPy function that cannot be traced."""


class CompileError(FusegradError, RuntimeError):
    """Code generation or native compilation failed."""
