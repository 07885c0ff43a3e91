"""All kernels of a library as one relocatable object, for a chosen CPU.

    target = Target.for_cpu("x86-64-v3")
    kernel = compile_kernel(entry, library="model", target=target, blas=True)  # optimized
    object_code = emit_object([kernel, ...], target)                            # one .o

Each kernel is rendered and optimized exactly as the JIT does it (runtime/jit.py:
same inlining, pass pipeline and code generation options), then renamed for the
library: its entry point becomes `<library>_k_<c name>` (hidden: the C wrapper in
`csource.py` is the exported function), and the C runtime it calls,
`fg_alloc` / `fg_free` / `fg_parallel_for`, becomes `<library>_fg_alloc`, … so that
two fusegrad libraries, or a user's own `fg_*` symbols, never meet in one program.
The outlined parallel bodies and the generated math functions are internal already.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import llvmlite.binding as llvm

from ..compiler import pipeline
from ..compiler.llvm.blas_names import PREFIX as BLAS_PREFIX
from ..compiler.llvm.render import render_program
from ..runtime import jit, native
from .collect import BuildError, Entry

#: --target-cpu choices: the LLVM CPU name and features (None: the build machine's).
TARGET_CPUS = {
    "native": None,
    "x86-64-v3": ("x86-64-v3", ""),  # Haswell and later: AVX2, FMA, BMI1/2, F16C, MOVBE
    "x86-64": ("x86-64", ""),  # any x86-64 CPU: SSE2
}
#: The C runtime functions generated code calls (renamed per library).
RUNTIME_CALLS = native.JIT_SYMBOLS


@dataclass
class Target:
    name: str  # a --target-cpu choice
    triple: str
    cpu: str
    features: str

    @staticmethod
    def for_cpu(choice: str) -> Target:
        if choice not in TARGET_CPUS:
            raise BuildError(
                f"unknown --target-cpu {choice!r}; choose one of {', '.join(TARGET_CPUS)}"
            )
        with jit._LOCK:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            triple = llvm.get_process_triple()
            if TARGET_CPUS[choice] is None:
                cpu, features = jit.host_cpu()
            else:
                cpu, features = TARGET_CPUS[choice]
        if TARGET_CPUS[choice] is not None and not triple.startswith("x86_64"):
            raise BuildError(
                f"--target-cpu {choice} is an x86-64 target, but this machine is {triple}; "
                "use --target-cpu native"
            )
        return Target(choice, triple, cpu, features)

    def machine(self):
        """A fresh LLVM target machine: position-independent code for shared libraries."""
        target = llvm.Target.from_triple(self.triple)
        return target.create_target_machine(
            cpu=self.cpu,
            features=self.features,
            opt=jit.OPT_LEVEL,
            reloc="pic",
            codemodel="default",
        )


@dataclass
class CompiledKernel:
    entry: Entry
    module: object  # llvmlite.binding.ModuleRef, optimized and renamed
    symbol: str  # the entry point's name in the object
    uses_blas: bool
    uses_scratch: bool
    seconds: float


def kernel_symbol(library: str, entry: Entry) -> str:
    return f"{library}_k_{entry.c_name}"


def compile_kernel(entry: Entry, library: str, target: Target, blas: bool) -> CompiledKernel:
    """Lower, render and optimize one entry's kernel (the JIT's pipeline, for `target`)."""
    start = time.perf_counter()
    program = pipeline.to_loop_ir(entry.function, blas=blas)
    if list(program.dims) != list(entry.function.dim_symbols()):
        raise BuildError(
            f"{entry.c_name}: the kernel's dims {program.dims} are not its parameters'"
        )
    llvm_ir = render_program(program, vector_bytes=jit.vector_bytes(target.cpu, target.features))
    uses_blas = BLAS_PREFIX in llvm_ir  # the renderer declared a BLAS function
    symbol = kernel_symbol(library, entry)
    with jit._LOCK, jit._no_vector_epilogue():
        machine = target.machine()
        module = jit._optimized_module(llvm_ir, machine, jit.OPT_LEVEL)
        function = module.get_function(program.name)
        function.name = symbol
        function.visibility = "hidden"
        for name in RUNTIME_CALLS:
            try:
                module.get_function(name).name = f"{library}_{name}"
            except NameError:
                pass  # this kernel does not call it
    seconds = time.perf_counter() - start
    return CompiledKernel(entry, module, symbol, uses_blas, bool(program.scratch), seconds)


def emit_object(kernels: list[CompiledKernel], target: Target) -> bytes:
    """One object file defining every kernel's entry point (hidden)."""
    with jit._LOCK:
        machine = target.machine()
        linked = llvm.parse_assembly("")
        linked.triple = machine.triple
        linked.data_layout = str(machine.target_data)
        for kernel in kernels:
            linked.link_in(kernel.module)  # takes the module; internal names are kept apart
        linked.verify()
        with jit._no_strength_reduction():
            return machine.emit_object(linked)
