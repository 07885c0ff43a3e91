"""Compiling the C runtime and linking the library with the system's C toolchain.

    tools = Toolchain.find()                     # $CC or cc, $AR or ar, nm (optional)
    tools.compile("rt.c", "rt.o", flags)         # a BuildError with cc's first error line
    tools.link_shared(objects, "libm.so", libs)
    tools.archive(objects, "libm.a")
    tools.exported("libm.so"), tools.undefined("libm.so")   # nm -D

The C runtime (csrc/fusegrad_rt.c, fusegrad_pool.c, fusegrad_products.c) is compiled into every library
with `-fvisibility=hidden` and its functions renamed `<library>_fg_*`, so that neither
the shared nor the static library exposes an `fg_*` symbol a program could meet twice.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from .collect import BuildError

RUNTIME_SOURCES = ("fusegrad_rt.c", "fusegrad_pool.c", "fusegrad_products.c", "fusegrad_gram.c")
RUNTIME_HEADER = "fusegrad_rt.h"
# FG_NO_BLOCK_CACHE: an AOT library keeps no state between calls (csrc/fusegrad_rt.c)
C_FLAGS = ("-std=c99", "-O2", "-fPIC", "-pthread", "-fvisibility=hidden", "-DFG_NO_BLOCK_CACHE")
SYSTEM_LIBS = ("-lm", "-pthread")


class Toolchain:
    def __init__(self, cc: list[str], ar: list[str], nm: str | None):
        self.cc = cc
        self.ar = ar
        self.nm = nm
        self.log: list[str] = []  # every command and its output, for build.log

    @staticmethod
    def find() -> Toolchain:
        cc = shlex.split(os.environ.get("CC", "cc")) or ["cc"]
        if shutil.which(cc[0]) is None:
            where = "$CC" if "CC" in os.environ else "cc"
            raise BuildError(
                f"no C compiler: {where} = {cc[0]!r} is not found; install gcc or clang "
                "(e.g. apt install gcc), or set CC=/path/to/cc"
            )
        ar = shlex.split(os.environ.get("AR", "ar")) or ["ar"]
        if shutil.which(ar[0]) is None:
            raise BuildError(
                f"no archiver: {ar[0]!r} is not found; install binutils, or set AR=/path/to/ar"
            )
        return Toolchain(cc, ar, shutil.which("nm"))

    def run(self, args: list[str], what: str) -> str:
        self.log.append("$ " + shlex.join(args))
        try:
            done = subprocess.run(args, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise BuildError(f"{what} failed: cannot run {args[0]}: {exc.strerror}") from exc
        output = (done.stdout + done.stderr).strip()
        if output:
            self.log.append(output)
        if done.returncode != 0:
            raise BuildError(
                f"{what} failed: {_first_error(output) or f'exit status {done.returncode}'}"
            )
        return done.stdout

    def compile(self, source: Path, target: Path, flags=()) -> None:
        self.run(
            [*self.cc, *C_FLAGS, *flags, "-c", str(source), "-o", str(target)],
            f"compiling {source.name}",
        )

    def link_shared(self, objects, target: Path, libs=()) -> None:
        args = [*self.cc, "-shared", "-fPIC", "-o", str(target), *map(str, objects)]
        args += [f"-Wl,-soname,{target.name}", "-Wl,-z,defs", *libs, *SYSTEM_LIBS]
        self.run(args, f"linking {target.name}")

    def archive(self, objects, target: Path) -> None:
        if target.exists():
            target.unlink()
        self.run([*self.ar, "rcs", str(target), *map(str, objects)], f"archiving {target.name}")

    def _symbols(self, library: Path, which: str) -> list[tuple[str, str]]:
        output = self.run([self.nm, "-D", which, str(library)], f"nm {library.name}")
        symbols = []
        for line in output.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                symbols.append((parts[-2], parts[-1]))  # (type, name[@version])
        return symbols

    def exported(self, library: Path) -> list[str]:
        """Names the shared library defines for others (`nm -D --defined-only`)."""
        return [name.split("@")[0] for _, name in self._symbols(library, "--defined-only")]

    def undefined(self, library: Path) -> list[str]:
        """Strong undefined symbols, `name@VERSION` where versioned (`nm -D --undefined-only`)."""
        return [name for kind, name in self._symbols(library, "--undefined-only") if kind == "U"]


def _first_error(output: str) -> str:
    """The line of cc's output that says what went wrong (not collect2's summary)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    useful = [line for line in lines if not re.search(r"collect2|ld returned", line)]
    for pattern in (r"\berror\b|undefined reference|cannot find|unrecognized", r"\bld\b"):
        for line in useful:
            if re.search(pattern, line, re.IGNORECASE):
                return line
    return (useful or lines or [""])[0]


def csrc_dir() -> Path:
    """The C runtime's sources: csrc/ of the source tree (next to `runtime/`)."""
    from .. import runtime

    candidates = [
        Path(runtime.__file__).resolve().parent.parent / "csrc",  # checkout, pip install -e
        Path(__file__).resolve().parent.parent / "csrc",  # shipped inside the package
    ]
    for candidate in candidates:
        if all((candidate / name).is_file() for name in (*RUNTIME_SOURCES, RUNTIME_HEADER)):
            return candidate
    raise BuildError(
        f"the C runtime sources ({', '.join(RUNTIME_SOURCES)}) are not found next to "
        f"{candidates[0].parent}; build from a fusegrad source checkout (pip install -e .)"
    )


def runtime_sources() -> list[Path]:
    return [csrc_dir() / name for name in RUNTIME_SOURCES]


def runtime_renames(library: str) -> list[str]:
    """`-Dfg_alloc=<library>_fg_alloc`, … for every function of the runtime's header."""
    text = (csrc_dir() / RUNTIME_HEADER).read_text()
    names = sorted(set(re.findall(r"\b(fg_\w+)\s*\(", text)))
    return [f"-D{name}={library}_{name}" for name in names]


def unexpected_undefined(symbols: list[str], blas_symbols: set[str]) -> list[str]:
    """Undefined symbols not from libc, libm or pthreads (glibc-versioned), nor the BLAS.
    libmvec's vector functions (`_ZGV…`) are versioned by glibc too, and refused."""
    unexpected = []
    versioned = any("@" in s for s in symbols)
    for symbol in symbols:
        name, _, version = symbol.partition("@")
        if name in blas_symbols:
            continue
        if name.startswith("_ZGV") or (versioned and not version.lstrip("@").startswith("GLIBC_")):
            unexpected.append(symbol)
    return unexpected


def pkg_config(
    library: str, outdir: Path, description: str, version: str, private: list[str]
) -> str:
    return f"""\
prefix={outdir}
libdir=${{prefix}}
includedir=${{prefix}}

Name: {library}
Description: {description}
Version: {version}
Cflags: -I${{includedir}}
Libs: -L${{libdir}} -Wl,-rpath,${{libdir}} -l{library}
Libs.private: {" ".join([*private, *SYSTEM_LIBS])}
"""
