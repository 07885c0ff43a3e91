"""Access to the C runtime (csrc/) compiled into ``fusegrad.runtime._native``.

Generated kernels call runtime functions such as ``fg_alloc``; the JIT makes
them resolvable with ``llvmlite.binding.add_symbol(name, address)`` using the
addresses from :func:`symbol_addresses`.
"""

from __future__ import annotations

try:
    from ._native import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "fusegrad's C runtime extension (fusegrad.runtime._native) is missing "
        "or fails to load; rebuild it by reinstalling from the project root "
        "with `pip install -e .` (original error: %s)" % (exc,)
    ) from exc

__all__ = [
    "JIT_SYMBOLS",
    "abi_version",
    "ffi",
    "get_num_threads",
    "lib",
    "release_memory",
    "set_num_threads",
    "strerror",
    "symbol_addresses",
]

#: Runtime functions that generated (JIT) code may call.
JIT_SYMBOLS = ("fg_alloc", "fg_free", "fg_parallel_for", "fg_gemm", "fg_symmetric_product",
               "fg_gram", "fg_row_scaled_product")


def symbol_addresses() -> dict[str, int]:
    """Map each name in :data:`JIT_SYMBOLS` to its address as an int."""
    return {
        name: int(ffi.cast("uintptr_t", ffi.addressof(lib, name)))
        for name in JIT_SYMBOLS
    }


def strerror(status: int) -> str:
    """Message for a kernel status code (``fg_strerror``)."""
    return ffi.string(lib.fg_strerror(int(status))).decode("utf-8")


def abi_version() -> int:
    """ABI version of the compiled runtime (``fg_runtime_abi_version``)."""
    return int(lib.fg_runtime_abi_version())


def set_num_threads(n: int) -> None:
    """Threads that later parallel loops may use (``fg_set_num_threads``; at most 1024).

    The default is ``$FUSEGRAD_NUM_THREADS``, else the number of online CPUs. The
    setting is process-wide; results do not depend on it. Matrix products run on
    the same pool (one-thread BLAS calls per piece), so they follow it too.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"the number of threads must be at least 1, got {n}")
    lib.fg_set_num_threads(min(n, 1024))


def get_num_threads() -> int:
    """Threads that parallel loops may use (``fg_get_num_threads``)."""
    return int(lib.fg_get_num_threads())


def release_memory() -> int:
    """Free the large blocks (scratch buffers, outputs ≥ 4 MiB) this thread keeps for
    its next kernel call (``fg_release_blocks``); the number of bytes freed.

    Each thread keeps up to 4 such blocks, 256 MiB in all, so that a kernel called in
    a loop does not take fresh memory from the system (and page-fault it in) on every
    call; a thread's blocks are also freed when it exits.
    """
    return int(lib.fg_release_blocks())
