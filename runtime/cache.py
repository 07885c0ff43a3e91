"""On-disk cache of compiled kernels, so a new process does not compile them again.

    key = kernel_key(function.digest, tree.structure, use_blas, opt_level)
    payload = load(key)          # bytes, or None (a miss, a bad entry, the cache off)
    store(key, payload)          # atomic: temp file in the same folder, fsync, rename

The key is a content hash of everything the machine code depends on: the graph, the
output tree, the BLAS flag, the optimization level, the target (triple, CPU name and
features), the fusegrad and LLVM versions and the compiler's own files (their sizes and
modification times, so an edited checkout never reads code compiled by an older one).

Derived Hessians and Jacobians are entries too (fusegrad/derivative_cache.py: a graph,
keyed by `entry_key("derivative", ...)`, with counts of their own), in the same folder,
format and size limit.

One entry is one file `<key>.kernel`:

    MAGIC (8 bytes) | key (64 ASCII hex) | payload length (8, little-endian)
    | SHA-256 of the payload (32) | payload

A short, long or altered file fails the check, counts as a miss and is replaced by the
next store. Where: `FUSEGRAD_CACHE_DIR`, else `$XDG_CACHE_HOME/fusegrad`, else
`~/.cache/fusegrad`; `FUSEGRAD_CACHE=0` turns the cache off. A folder that cannot be
written turns it off for the process, with one warning.

Size: the folder is kept under `FUSEGRAD_CACHE_MAX_MB` (default 512) by evicting the
least recently used entries after a store (a hit refreshes an entry's modification
time), down to 3/4 of the limit so that evictions are rare. Entries of an older
checkout or version are never read again and age out this way; temp files a killed
process left behind are removed after an hour.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import threading
import time
import warnings
from pathlib import Path

MAGIC = b"FGKERN01"
DEFAULT_MAX_MB = 512
_STALE_TEMP_S = 3600.0
_HEADER = struct.Struct("<8s64sQ32s")
SUFFIX = ".kernel"

#: What this process did with the cache (for tests and benchmarks).
stats = {"hits": 0, "misses": 0, "stores": 0, "bad_entries": 0, "evicted": 0}

_lock = threading.Lock()
_broken: str | None = None  # why writing failed; the cache is off for the process
_environment: str | None = None  # the part of every key that is fixed for the process


def enabled() -> bool:
    return os.environ.get("FUSEGRAD_CACHE", "1") != "0" and _broken is None


def directory() -> Path:
    configured = os.environ.get("FUSEGRAD_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return Path(base) / "fusegrad"


def clear() -> int:
    """Remove every entry (and leftover temp file); the number of files removed."""
    removed = 0
    folder = directory()
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        if path.suffix == SUFFIX or path.name.startswith(".tmp-"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def summary() -> dict:
    """What `python -m fusegrad cache` prints: the folder, whether the cache is on (and
    if not, why), its entries and their size, and the size limit."""
    folder = directory()
    sizes = []
    try:
        listing = list(os.scandir(folder)) if folder.is_dir() else []
    except OSError:  # not readable: shown as empty, with the folder named
        listing = []
    for item in listing:
        if item.name.endswith(SUFFIX) and not item.name.startswith(".tmp-"):
            try:
                sizes.append(item.stat().st_size)
            except OSError:  # removed meanwhile by another process
                pass
    if os.environ.get("FUSEGRAD_CACHE", "1") == "0":
        state = "off (FUSEGRAD_CACHE=0)"
    elif _broken is not None:
        state = f"off for this process ({_broken})"
    else:
        state = "on"
    return {"folder": str(folder), "state": state, "entries": len(sizes),
            "bytes": sum(sizes), "limit_bytes": max_bytes()}


def environment() -> str:
    """Versions, target and compiler files: what every key shares in this process."""
    global _environment
    if _environment is None:
        import llvmlite.binding as llvm

        import fusegrad

        from . import jit

        parts = (
            fusegrad.__version__,
            llvm.llvm_version_info,
            llvm.get_process_triple(),
            *jit.host_cpu(),
            _source_fingerprint(),
        )
        _environment = repr(parts)
    return _environment


def _source_fingerprint() -> str:
    """Name, size and modification time of every file of the compiler and runtime."""
    import fusegrad.compiler
    import fusegrad.runtime

    import fusegrad

    folders = {
        Path(m.__file__).parent for m in (fusegrad, fusegrad.compiler, fusegrad.runtime)
    }
    rows: list[str] = []
    for folder in sorted(folders):
        _fingerprint_rows(str(folder), "", rows)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def _fingerprint_rows(folder: str, prefix: str, rows: list) -> None:
    # os.scandir, not os.walk + relpath: this runs in every process's first call
    # (1.0 → 0.7 ms in a fresh process), before the cache can answer
    with os.scandir(folder) as listing:
        entries = sorted(listing, key=lambda entry: entry.name)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if entry.name != "__pycache__":
                _fingerprint_rows(entry.path, f"{prefix}{entry.name}/", rows)
        elif entry.name.endswith((".py", ".so")):
            info = entry.stat()
            rows.append(f"{prefix}{entry.name} {info.st_size} {info.st_mtime_ns}")


def kernel_key(digest: str, structure, use_blas: bool, opt_level: int) -> str:
    text = repr((environment(), digest, repr(structure), use_blas, opt_level))
    return hashlib.sha256(text.encode()).hexdigest()


def entry_key(kind: str, *parts: str) -> str:
    """The key of an entry of another kind (`"derivative"`: fusegrad/derivative_cache.py):
    a hash of the kind, the parts and the environment."""
    text = repr((environment(), kind, parts))
    return hashlib.sha256(text.encode()).hexdigest()


def _path(key: str) -> Path:
    return directory() / f"{key}{SUFFIX}"


def load(key: str, counts: dict = stats) -> bytes | None:
    """The payload stored under `key`, or None (missing, bad, or the cache is off);
    counted in `counts` (entries of another kind keep counts of their own)."""
    if not enabled():
        return None
    try:
        data = _path(key).read_bytes()
    except OSError:
        counts["misses"] += 1
        return None
    payload = _check(data, key)
    if payload is None:
        counts["bad_entries"] += 1
        counts["misses"] += 1
        return None
    counts["hits"] += 1
    _touch(_path(key))
    return payload


def _touch(path: Path) -> None:
    """Mark an entry as just used (eviction removes the least recently used first)."""
    try:
        os.utime(path)
    except OSError:  # read-only folder, or evicted by another process meanwhile
        pass


def max_bytes() -> int:
    """The size limit of the folder, from `FUSEGRAD_CACHE_MAX_MB`."""
    configured = os.environ.get("FUSEGRAD_CACHE_MAX_MB", "")
    try:
        megabytes = float(configured) if configured else DEFAULT_MAX_MB
    except ValueError:
        warnings.warn(
            f"fusegrad: FUSEGRAD_CACHE_MAX_MB={configured!r} is not a number; "
            f"using {DEFAULT_MAX_MB}",
            RuntimeWarning,
            stacklevel=3,
        )
        megabytes = DEFAULT_MAX_MB
    return max(0, int(megabytes * 2**20))


def evict(folder: Path | None = None, limit: int | None = None) -> int:
    """Remove least recently used entries until the folder holds at most 3/4 of `limit`
    bytes (if it holds more than `limit`), and stale temp files; the number removed.

    Safe with concurrent processes: an entry removed under a reader is a miss there."""
    folder = directory() if folder is None else folder
    limit = max_bytes() if limit is None else limit
    entries, total, removed = [], 0, 0
    now = time.time()
    try:
        scan = list(os.scandir(folder))
    except OSError:
        return 0
    for item in scan:
        try:
            info = item.stat()
        except OSError:
            continue
        if item.name.startswith(".tmp-"):
            if now - info.st_mtime > _STALE_TEMP_S:
                removed += _remove(item.path)
        elif item.name.endswith(SUFFIX):
            entries.append((info.st_mtime_ns, info.st_size, item.path))
            total += info.st_size
    if total <= limit:
        return removed
    for _, size, path in sorted(entries):  # oldest first
        if total <= limit * 3 // 4:
            break
        if _remove(path):
            removed += 1
            stats["evicted"] += 1
        total -= size
    return removed


def _remove(path: str) -> int:
    try:
        os.unlink(path)
        return 1
    except OSError:
        return 0


def _check(data: bytes, key: str) -> bytes | None:
    if len(data) < _HEADER.size:
        return None
    magic, stored_key, length, checksum = _HEADER.unpack_from(data)
    payload = data[_HEADER.size :]
    if magic != MAGIC or stored_key != key.encode() or length != len(payload):
        return None
    if hashlib.sha256(payload).digest() != checksum:
        return None
    return payload


def store(key: str, payload: bytes, counts: dict = stats) -> None:
    """Write the entry atomically; a failure turns the cache off, with one warning."""
    global _broken
    if not enabled():
        return
    header = _HEADER.pack(
        MAGIC, key.encode(), len(payload), hashlib.sha256(payload).digest()
    )
    folder = directory()
    temp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, temp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=SUFFIX)
        with os.fdopen(descriptor, "wb") as file:
            file.write(header)
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, _path(key))
        temp = None
        counts["stores"] += 1
        evict(folder)
    except OSError as exc:
        with _lock:
            if _broken is None:
                _broken = f"{folder}: {exc}"
                warnings.warn(
                    f"fusegrad: the kernel cache is off for this process ({_broken})",
                    RuntimeWarning,
                    stacklevel=2,
                )
    finally:
        if temp is not None:
            try:
                os.unlink(temp)
            except OSError:
                pass
