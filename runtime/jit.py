"""Compile LLVM IR text to native code in this process (llvmlite, ORC LLJIT).

    kernel = jit_compile(llvm_ir, "f")   # optimize (O2, loop vectorization), codegen
    kernel.address                       # the function pointer, for cffi / ctypes
    kernel.address_of("f_packed")        # another function the object code exports

LLVM generates object code for the host CPU (`_object_codes`); the process's one ORC
LLJIT instance links each kernel's object files as a library of their own, resolving
the runtime functions generated code calls (`fg_alloc`, `fg_parallel_for`, the BLAS)
to the C runtime extension's addresses and anything else (`memset`) in the process.
A kernel's library is unloaded when the kernel is freed. Linking is the whole cost of
loading a cached kernel: 0.4–0.7 ms, against 2.1–2.4 ms for a first MCJIT engine, which
ran its code-generation pipeline over an empty module at its first `finalize_object`
(the LLJIT instance, created once per process with the target, takes ~0.7 ms).

One lock (`_LOCK`) serializes the compilations of a process; inside one, the parts of
the module (runtime/module_parts.py) compile on several threads, each in an LLVM context
of its own, and one library links their object files.

Compile time is most of a first call, so the pipeline is chosen by measurement
(generated kernels of the benchmark workloads, run time within 1 % except where said):

- internal functions called once (the outlined body of a parallel loop) and the
  always-inline math functions are inlined *before* the pipeline, so their loops
  are simplified once, in place, not once alone and again after inlining;
- O2, not O3: O3 adds non-trivial loop unswitching and more inlining, which copy
  loops the vectorizer then versions again (-20 % optimizer time on W3). The price:
  without unswitching of its row loops W1 1,000,000×32 runs 3–5 % slower on one
  thread, while W1 200×8 runs 2 % faster;
- no loop strength reduction in code generation (`-disable-lsr`, set only while
  this module compiles code): on vectorized loops with several versions each it
  took 30–45 % of code generation;
- loop vectorization with interleaving, but no SLP vectorizer and no loop unroller:
  the kernels are loops, which the loop vectorizer already widens and interleaves;
  SLP and runtime unrolling only grew the code (-10 % optimizer time on W3).
- no vectorized epilogue (`-enable-epilogue-vectorization=false`, set only while the
  pipeline runs): a loop's remainder after the wide, interleaved body runs scalar, not
  as a second, narrower vector loop with run-time checks of its own (W3's compile
  124 → 108 ms in-process; run times of W1, W2, W3, W6 unchanged within the noise,
  ±2 %). The renderer also asks for no interleaving of loops that reduce nothing
  (`compiler/llvm/render.py`).
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import os
import threading

import llvmlite.binding as llvm
from llvmlite.binding import ffi

from ..compiler.errors import CompileError
from .module_parts import DEFINITION, split_module

OPT_LEVEL = 2  # the IR pass pipeline (O0..O3); code generation runs at the same level

_LOCK = threading.RLock()  # guards LLVM initialization and every compilation
_initialized = False
_session = None  # the process's LLJIT instance: every kernel is a library linked into it
_imports: dict[str, int] = {}  # runtime function -> address, for every library
_libraries = itertools.count()  # library names are never reused in an LLJIT instance
# libllvmlite's functions without llvmlite's one lock around each call (see _object_codes)
_UNLOCKED = getattr(ffi.lib, "_lib", ffi.lib)


def _initialize():
    global _initialized, _session
    with _LOCK:
        if _initialized:
            return
        from .native import symbol_addresses

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        host_cpu()  # every compile and every cached load needs it (~0.5 ms, once)
        from . import blas

        _imports.update({**symbol_addresses(), **blas.symbol_addresses()})
        _session = llvm.create_lljit_compiler(_host_target_machine(OPT_LEVEL))
        # Never disposed, not even at exit: kernels' libraries (freed by their own
        # finalizers, in no set order at interpreter shutdown) must not outlive it.
        _session._owned = True
        _initialized = True


@functools.cache
def host_cpu() -> tuple[str, str]:
    """(name, features) of this machine's CPU for LLVM; asked once (~0.4 ms a time)."""
    return llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()


def vector_bytes(cpu: str, features: str) -> int:
    """The widest vector register of a CPU for LLVM (bytes): 64 with AVX-512, 32 with
    AVX2, 16 otherwise (SSE2 on every x86-64; also the default elsewhere)."""
    flags = set(features.split(","))
    if "+avx512f" in flags or cpu == "x86-64-v4":
        return 64
    if "+avx2" in flags or cpu == "x86-64-v3":
        return 32
    return 16


def host_vector_bytes() -> int:
    return vector_bytes(*host_cpu())


def _host_target_machine(opt_level: int):
    target = llvm.Target.from_default_triple()
    cpu, features = host_cpu()
    return target.create_target_machine(
        cpu=cpu,
        features=features,
        opt=opt_level,
        codemodel="jitdefault",
        jit=True,
    )


def _parse(llvm_ir: str, tm, context=None):
    try:
        module = llvm.parse_assembly(llvm_ir, context)
        module.verify()
    except RuntimeError as exc:
        raise CompileError(f"invalid LLVM IR: {exc}") from exc
    module.triple = tm.triple
    module.data_layout = str(tm.target_data)
    return module


def _called_once(llvm_ir: str) -> list[str]:
    """Internal functions with one call site in the text (the definition and one call)."""
    names = []
    for internal, quoted in DEFINITION.findall(llvm_ir):
        if internal and llvm_ir.count(f"@{quoted}(") == 2:
            names.append(quoted.strip('"'))
    return names


def _inline_first(module, llvm_ir: str, tm, native=ffi.lib):
    """Inline the always-inline functions and the internal functions called once."""
    for name in _called_once(llvm_ir):
        module.get_function(name).add_function_attribute("alwaysinline")
    manager = llvm.create_new_module_pass_manager()
    manager.add_always_inliner_pass()
    manager.add_global_dead_code_eliminate_pass()
    builder = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options())
    native.LLVMPY_RunNewModulePassManager(manager, module, builder)


def _optimize(module, tm, opt_level: int, native=ffi.lib):
    """The O`opt_level` pipeline (with `_no_vector_epilogue()` set by the caller)."""
    options = llvm.create_pipeline_tuning_options(speed_level=opt_level)
    options.loop_vectorization = opt_level > 0
    options.loop_interleaving = opt_level > 0
    options.slp_vectorization = False
    options.loop_unrolling = False
    builder = llvm.create_pass_builder(tm, options)
    native.LLVMPY_RunNewModulePassManager(builder.getModulePassManager(), module, builder)


def _optimized_module(llvm_ir: str, tm, opt_level: int, context=None, native=ffi.lib):
    module = _parse(llvm_ir, tm, context)
    if opt_level > 0:
        _inline_first(module, llvm_ir, tm, native)
    _optimize(module, tm, opt_level, native)
    return module


def _object_code(llvm_ir: str, opt_level: int, native=ffi.lib) -> bytes:
    """Optimize one module in an LLVM context of its own and generate its object code
    (with `_no_vector_epilogue()` and `_no_strength_reduction()` set by the caller)."""
    tm = _host_target_machine(opt_level)
    module = _optimized_module(llvm_ir, tm, opt_level, llvm.create_context(), native)
    with ffi.OutputString() as error:
        buffer = native.LLVMPY_TargetMachineEmitToMemory(tm, module, 1, error)
        if not buffer:
            raise CompileError(f"native code generation failed: {error}")
    try:
        start = ffi.lib.LLVMPY_GetBufferStart(buffer)
        return ctypes.string_at(start, ffi.lib.LLVMPY_GetBufferSize(buffer))
    finally:
        ffi.lib.LLVMPY_DisposeMemoryBuffer(buffer)


def compile_threads() -> int:
    """Threads that compile the parts of a module at the same time:
    FUSEGRAD_COMPILE_THREADS, or this process's CPUs (1 compiles a module whole)."""
    setting = os.environ.get("FUSEGRAD_COMPILE_THREADS", "").strip()
    if not setting:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if not setting.isdigit() or int(setting) < 1:
        raise ValueError(f"FUSEGRAD_COMPILE_THREADS must be a positive integer, got {setting!r}")
    return int(setting)


def _object_codes(parts: list[str], opt_level: int, threads: int) -> list[bytes]:
    """Object code of each part, compiled by up to `threads` threads (this one too), the
    parts taken in order (the longest first) as threads come free. The threads call
    LLVM past llvmlite's one lock (`_UNLOCKED`) for the three long steps only: each part
    has its own LLVM context, module and target machine, and LLVM compiles separate
    contexts concurrently (its own parallel code generation does the same)."""
    native = _UNLOCKED if threads > 1 else ffi.lib
    objects: list = [None] * len(parts)
    errors: list[BaseException] = []
    pending = iter(range(len(parts)))
    take = threading.Lock()

    def work():
        while not errors:
            with take:
                index = next(pending, None)
            if index is None:
                return
            try:
                objects[index] = _object_code(parts[index], opt_level, native)
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller
                errors.append(exc)

    helpers = [threading.Thread(target=work, daemon=True) for _ in range(threads - 1)]
    for helper in helpers:
        helper.start()
    work()
    for helper in helpers:
        helper.join()
    if errors:
        raise errors[0]
    return objects


class _LlvmOption:
    """An LLVM command-line option set for fusegrad's compiles only: LLVM options are
    process-wide, so other llvmlite users get the default back afterwards."""

    def __init__(self, name: str, during: str, after: str):
        self.name, self.during, self.after = name, during, after

    def __enter__(self):
        llvm.set_option("fusegrad", f"-{self.name}={self.during}")

    def __exit__(self, *exc):
        llvm.set_option("fusegrad", f"-{self.name}={self.after}")


def _no_vector_epilogue():
    """The pass pipeline without vectorized loop epilogues."""
    return _LlvmOption("enable-epilogue-vectorization", "false", "true")


def _no_strength_reduction():
    """Code generation without loop strength reduction."""
    return _LlvmOption("disable-lsr", "true", "false")


class JitKernel:
    """A compiled function: keep this object alive while `address` is called (its
    library is unloaded when it is freed)."""

    def __init__(self, name: str, library, source: str, opt_level: int):
        self.name = name
        self.address = library[name]
        self.source = source  # the LLVM IR as given, before optimization
        self.opt_level = opt_level
        self._library = library  # owns the machine code (an LLJIT resource tracker)
        self._llvm_ir = None
        self._asm = None

    def address_of(self, symbol: str) -> int:
        """The address of another function the object code defines (exported when it
        was linked: `exports` of `jit_compile` / `jit_load`)."""
        return self._library[symbol]

    @property
    def llvm_ir(self) -> str:
        """The optimized module (optimized again from `source`, on first use, for reading:
        the compiled one belongs to the engine)."""
        if self._llvm_ir is None:
            with _LOCK, _no_vector_epilogue():
                tm = _host_target_machine(self.opt_level)
                self._llvm_ir = str(_optimized_module(self.source, tm, self.opt_level))
        return self._llvm_ir

    @property
    def asm(self) -> str:
        """Assembly of the optimized module (a fresh, separate codegen for reading)."""
        if self._asm is None:
            with _LOCK, _no_strength_reduction():
                tm = _host_target_machine(self.opt_level)
                self._asm = tm.emit_assembly(_parse(self.llvm_ir, tm))
        return self._asm

    def __repr__(self):
        return f"JitKernel({self.name!r}, address=0x{self.address:x})"


def jit_compile(
    llvm_ir: str, name: str, opt_level: int = OPT_LEVEL, on_object=None, exports=()
) -> JitKernel:
    """Optimize and compile `llvm_ir`; the kernel's `address` is the function `name`,
    `address_of(e)` that of each function in `exports`. `on_object(bytes)`, if given,
    receives each object file (for `jit_load`).

    With more than one compile thread the module is cut into parts that compile at the
    same time (runtime/module_parts.py: the entry point, each parallel loop's body) and
    the engine links their object files; W3's compile went from ~120 to 74–95 ms on two
    cores. One thread compiles the module whole (the parts would cost ~10 % more)."""
    if not 0 <= opt_level <= 3:
        raise ValueError(f"opt_level must be 0..3, got {opt_level}")
    _initialize()
    threads = compile_threads() if opt_level > 0 else 1
    parts = split_module(llvm_ir) if threads > 1 else [llvm_ir]
    with _LOCK, _no_vector_epilogue(), _no_strength_reduction():
        objects = _object_codes(parts, opt_level, min(threads, len(parts)))
    if on_object is not None:
        for object_code in objects:
            on_object(object_code)
    return _link(objects, name, exports, llvm_ir, opt_level, "compiled")


def jit_load(
    objects: list[bytes], name: str, exports=(), source: str = "", opt_level: int = OPT_LEVEL
) -> JitKernel:
    """The kernel of the object files from `jit_compile(..., on_object=...)` for this
    target: linked and loaded, with no optimization or code generation (0.4–0.7 ms)."""
    _initialize()
    return _link(objects, name, exports, source, opt_level, "cached")


def _link(objects, name: str, exports, source: str, opt_level: int, kind: str) -> JitKernel:
    """Link the object files as a new library of the process's LLJIT instance."""
    builder = llvm.JITLibraryBuilder()
    for object_code in objects:
        builder.add_object_img(object_code)
    builder.add_current_process()  # libc's memset and memcpy, which code generation calls
    for symbol, address in _imports.items():
        builder.import_symbol(symbol, address)
    for symbol in (name, *exports):
        builder.export_symbol(symbol)
    with _LOCK:
        try:
            library = builder.link(_session, f"{name}.{next(_libraries)}")
        except RuntimeError as exc:
            raise CompileError(f"linking the {kind} object code failed: {exc}") from exc
    missing = [symbol for symbol in (name, *exports) if not library[symbol]]
    if missing:
        raise CompileError(f"the {kind} object code defines no function {missing[0]!r}")
    return JitKernel(name, library, source, opt_level)
