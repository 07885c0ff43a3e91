"""Compile LLVM IR text to native code in this process (llvmlite MCJIT).

    kernel = jit_compile(llvm_ir, "f")   # optimize (O3, loop + SLP vectorization), codegen
    kernel.address                       # the function pointer, for cffi / ctypes

Every engine gets a target machine of its own (the engine owns and frees it) for
the host CPU. The runtime functions generated code calls (`fg_alloc`, `fg_free`)
are registered once from the C runtime extension. llvmlite is not thread-safe
while compiling, so one lock serializes all compilation.
"""

from __future__ import annotations

import threading

import llvmlite.binding as llvm

from ..compiler.errors import CompileError

_LOCK = threading.RLock()  # guards LLVM initialization and every compilation
_initialized = False


def _initialize():
    global _initialized
    with _LOCK:
        if _initialized:
            return
        from .native import symbol_addresses

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        from . import blas

        for name, address in {**symbol_addresses(), **blas.symbol_addresses()}.items():
            llvm.add_symbol(name, address)
        _initialized = True


def _host_target_machine(opt_level: int):
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(
        cpu=llvm.get_host_cpu_name(),
        features=llvm.get_host_cpu_features().flatten(),
        opt=opt_level,
        codemodel="jitdefault",
        jit=True,
    )


def _parse(llvm_ir: str, tm):
    try:
        module = llvm.parse_assembly(llvm_ir)
        module.verify()
    except RuntimeError as exc:
        raise CompileError(f"invalid LLVM IR: {exc}") from exc
    module.triple = tm.triple
    module.data_layout = str(tm.target_data)
    return module


def _optimize(module, tm, opt_level: int):
    options = llvm.create_pipeline_tuning_options(speed_level=opt_level)
    options.loop_vectorization = opt_level > 0
    options.slp_vectorization = opt_level > 0
    options.loop_unrolling = opt_level > 0
    builder = llvm.create_pass_builder(tm, options)
    builder.getModulePassManager().run(module, builder)


class JitKernel:
    """A compiled function: keep this object alive while `address` is called."""

    def __init__(self, name: str, engine, address: int, llvm_ir: str, opt_level: int):
        self.name = name
        self.address = address
        self.llvm_ir = llvm_ir  # the optimized module
        self.opt_level = opt_level
        self._engine = engine  # owns the machine code and its target machine
        self._asm = None

    @property
    def asm(self) -> str:
        """Assembly of the optimized module (a fresh, separate codegen for reading)."""
        if self._asm is None:
            with _LOCK:
                tm = _host_target_machine(self.opt_level)
                self._asm = tm.emit_assembly(_parse(self.llvm_ir, tm))
        return self._asm

    def __repr__(self):
        return f"JitKernel({self.name!r}, address=0x{self.address:x})"


def jit_compile(llvm_ir: str, name: str, opt_level: int = 3) -> JitKernel:
    """Optimize and compile `llvm_ir`; the kernel's `address` is the function `name`."""
    if not 0 <= opt_level <= 3:
        raise ValueError(f"opt_level must be 0..3, got {opt_level}")
    _initialize()
    with _LOCK:
        tm = _host_target_machine(opt_level)
        module = _parse(llvm_ir, tm)
        _optimize(module, tm, opt_level)
        optimized = str(module)
        try:
            engine = llvm.create_mcjit_compiler(module, tm)  # takes ownership of tm
            engine.finalize_object()
        except RuntimeError as exc:
            raise CompileError(f"native code generation failed: {exc}") from exc
        address = engine.get_function_address(name)
    if not address:
        raise CompileError(f"the compiled module defines no function {name!r}")
    return JitKernel(name, engine, address, optimized, opt_level)
