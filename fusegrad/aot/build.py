"""`python -m fusegrad build MODULE.py -o OUTDIR`: a module's compiled functions as a C library.

    result = build_library("model.py", "out", target_cpu="x86-64-v3")
    # out/libmodel.so, out/libmodel.a, out/model.h, out/model.pc

The build, step by step:

    import the module ─ collect (annotated compiled functions, traced with named dims)
        ─ compile_kernel per function (the JIT's pipeline, for the target CPU)
        ─ emit_object (all kernels, one object) ─ header + API wrappers (C)
        ─ cc: C runtime + wrappers ─ link .so (-z defs), archive .a ─ nm checks ─ .pc

Everything is built in a temporary folder and moved into OUTDIR at the end, so a
failed build leaves OUTDIR as it was (and a `build.log` with every command run).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..compiler.errors import FusegradError
from ..compiler.llvm.blas_names import ALL_BLAS_SYMBOLS
from . import link
from .codegen import Target, compile_kernel, emit_object
from .collect import C_KEYWORDS, BuildError, collect, load_module
from .csource import api_source, header



@dataclass
class BuildResult:
    name: str
    outdir: Path
    files: list[Path]
    functions: list[str]  # exported C names, in order
    blas_flags: list[str] = field(default_factory=list)  # empty: needs no BLAS

    @property
    def shared(self) -> Path:
        return self.outdir / f"lib{self.name}.so"

    @property
    def static(self) -> Path:
        return self.outdir / f"lib{self.name}.a"

    @property
    def header(self) -> Path:
        return self.outdir / f"{self.name}.h"

    def link_line(self, static: bool = False) -> str:
        """How a C program links this library (with the system cc)."""
        out = str(self.outdir)
        if static:
            return (
                f"cc prog.c -I{out} {self.static} {' '.join([*self.blas_flags, *link.SYSTEM_LIBS])}"
            )
        return f"cc prog.c -I{out} -L{out} -Wl,-rpath,{out} -l{self.name}"


def library_name(module_path: Path, name: str | None) -> str:
    name = name or module_path.stem
    if not (name.isascii() and name.isidentifier()) or name in C_KEYWORDS:
        raise BuildError(
            f"library name {name!r} is not a C identifier; pass --name NAME "
            "(letters, digits and _, not starting with a digit)"
        )
    return name


def _blas_location(wanted: bool, echo) -> tuple[str, str] | None:
    """(library folder, library name) of scipy-openblas32, or None for generated loops."""
    if not wanted:
        return None
    try:
        import scipy_openblas32
    except ImportError:
        echo("  note: scipy-openblas32 is not installed: matrix products use generated loops")
        return None
    return scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library()


def build_library(
    module_path,
    outdir,
    name: str | None = None,
    target_cpu: str = "native",
    blas: bool = True,
    echo=print,
) -> BuildResult:
    """Build the library (see the module doc); `echo` gets the progress lines."""
    module_path = Path(module_path)
    build = _Build(
        module_path=module_path,
        outdir=Path(outdir).resolve(),
        library=library_name(module_path, name),
        tools=link.Toolchain.find(),  # first: a missing cc fails before any work
        target=Target.for_cpu(target_cpu),
        runtime_sources=link.runtime_sources(),
        echo=echo,
    )
    build.blas = _blas_location(blas, echo)
    entries, skipped = collect(load_module(module_path), build.library)
    build.echo(
        f"fusegrad build: {module_path.name} -> {build.outdir}/lib{build.library}.so "
        f"(target {build.target.name}: {build.target.cpu}; "
        f"BLAS: {'OpenBLAS (scipy-openblas32)' if build.blas else 'none'})"
    )
    for item in skipped:
        echo(f"  skipped {item}: no annotations (JIT only)")
    kernels = build.compile_kernels(entries)
    with tempfile.TemporaryDirectory(prefix="fusegrad-build-") as scratch:
        try:
            files = build.write_files(Path(scratch), entries, kernels)
        except BuildError:
            build.outdir.mkdir(parents=True, exist_ok=True)
            (build.outdir / "build.log").write_text("\n".join(build.tools.log) + "\n")
            raise
        build.outdir.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.move(str(path), str(build.outdir / path.name))  # a rename where it can be
    (build.outdir / "build.log").unlink(missing_ok=True)
    installed = [build.outdir / path.name for path in files]
    result = BuildResult(
        build.library, build.outdir, installed, [e.c_name for e in entries], build.blas_flags
    )
    echo(f"built {', '.join(p.name for p in installed)} in {build.outdir}")
    echo(f"link: {result.link_line()}")
    echo(f"  or: PKG_CONFIG_PATH={build.outdir} pkg-config --cflags --libs {build.library}")
    return result


@dataclass
class _Build:
    module_path: Path
    outdir: Path
    library: str
    tools: link.Toolchain
    target: Target
    runtime_sources: list[Path]
    echo: object
    blas: tuple[str, str] | None = None  # where scipy-openblas32 is, if kernels may call it
    blas_flags: list[str] = field(default_factory=list)  # set when some kernel calls it

    def compile_kernels(self, entries) -> list:
        kernels = []
        width = max(len(e.c_name) for e in entries)
        for entry in entries:
            try:
                kernel = compile_kernel(entry, self.library, self.target, self.blas is not None)
            except BuildError:
                raise
            except FusegradError as exc:
                raise BuildError(f"{entry.c_name}: {exc}") from exc
            kernels.append(kernel)
            dims = ", ".join(entry.dim_names)
            self.echo(
                f"  {entry.c_name:<{width}}  ({dims}) -> {', '.join(entry.output_names)}"
                f"  {kernel.seconds * 1e3:.0f} ms"
            )
        if any(k.uses_blas for k in kernels):
            folder, name = self.blas
            self.blas_flags = [f"-L{folder}", f"-Wl,-rpath,{folder}", f"-l{name}"]
        return kernels

    def write_files(self, scratch: Path, entries, kernels) -> list[Path]:
        """Object, header, wrappers, runtime, .so, .a, .pc in `scratch`; the files to install."""
        library, tools = self.library, self.tools
        start = time.perf_counter()
        objects = [scratch / f"{library}_kernels.o"]
        objects[0].write_bytes(emit_object(kernels, self.target))
        plural = "s" if len(kernels) != 1 else ""
        self.echo(
            f"  code generation ({len(kernels)} kernel{plural}, one object)"
            f"  {(time.perf_counter() - start) * 1e3:.0f} ms"
        )

        start = time.perf_counter()
        blas_note = None
        if self.blas_flags:
            blas_note = f"lib{self.blas[1]}.so in {self.blas[0]}"
        header_path = scratch / f"{library}.h"
        header_path.write_text(
            header(library, self.module_path.name, entries, kernels, self.target, blas_note)
        )
        api = scratch / f"{library}_api.c"
        api.write_text(api_source(library, entries, kernels))
        objects.append(scratch / f"{library}_api.o")
        tools.compile(api, objects[-1], [f"-I{scratch}"])
        renames = link.runtime_renames(library)
        for source in self.runtime_sources:
            objects.append(scratch / f"{library}_{source.stem}.o")
            tools.compile(source, objects[-1], [f"-I{source.parent}", *renames])
        shared, static = scratch / f"lib{library}.so", scratch / f"lib{library}.a"
        tools.link_shared(objects, shared, self.blas_flags)
        tools.archive(objects, static)
        self.check_symbols(shared, entries)
        pc = scratch / f"{library}.pc"
        description = f"fusegrad kernels built from {self.module_path.name}"
        pc.write_text(
            link.pkg_config(library, self.outdir, description, __version__, self.blas_flags)
        )
        self.echo(
            f"  C runtime, wrappers and link (cc)  {(time.perf_counter() - start) * 1e3:.0f} ms"
        )
        return [shared, static, header_path, pc]

    def check_symbols(self, shared: Path, entries) -> None:
        """The shared library exports exactly its API and needs only libc, libm, pthreads
        (and the BLAS where a kernel calls it)."""
        if self.tools.nm is None:
            return
        library = self.library
        api = {e.c_name for e in entries}
        api |= {f"{library}_strerror", f"{library}_set_num_threads", f"{library}_get_num_threads"}
        extra = sorted(set(self.tools.exported(shared)) - api)
        if extra:
            raise BuildError(
                f"lib{library}.so exports internal symbols {', '.join(extra)} (a fusegrad bug)"
            )
        blas = ALL_BLAS_SYMBOLS if self.blas_flags else set()
        unexpected = link.unexpected_undefined(self.tools.undefined(shared), blas)
        if unexpected:
            raise BuildError(
                f"lib{library}.so needs symbols beyond libc, libm, pthreads and the BLAS: "
                f"{', '.join(unexpected)} (a fusegrad bug)"
            )
