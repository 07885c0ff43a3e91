"""A second entry point with one fixed C signature, for callers that pass arrays of arguments.

    int32 name_packed(const int64 *dims, ptr const *buffers)
        = name(dims[0], ..., dims[D-1], buffers[0], ..., buffers[B-1])

`name` is the entry point `render_program` defines (D dims, then B input and output
buffers). A C caller (the binder in csrc/fusegrad_binder.c) can then call any kernel
without knowing its arity. The call is `noinline`: the wrapper stays a few
instructions and the kernel is not compiled twice.
"""

from __future__ import annotations

from llvmlite import ir

from .. import loopir
from .scalar import I32, I64, PTR


def packed_name(program: loopir.Program) -> str:
    return f"{program.name}_packed"


def render_packed_entry(program: loopir.Program) -> str:
    """LLVM IR text of `name_packed`, to append to the module of `render_program`."""
    module = ir.Module(name=packed_name(program))
    n_dims = len(program.dims)
    n_buffers = len(program.inputs) + len(program.outputs)
    entry = ir.Function(
        module, ir.FunctionType(I32, [I64] * n_dims + [PTR] * n_buffers), name=program.name
    )
    packed = ir.Function(module, ir.FunctionType(I32, [PTR, PTR]), name=packed_name(program))
    packed.attributes.add("nounwind")
    dims, buffers = packed.args
    dims.name, buffers.name = "dims", "buffers"
    builder = ir.IRBuilder(packed.append_basic_block("entry"))
    args = [
        builder.load(builder.gep(dims, [ir.Constant(I64, k)], source_etype=I64), typ=I64)
        for k in range(n_dims)
    ]
    args += [
        builder.load(builder.gep(buffers, [ir.Constant(I64, k)], source_etype=PTR), typ=PTR)
        for k in range(n_buffers)
    ]
    status = builder.call(entry, args, attrs=("noinline",))
    builder.ret(status)
    return str(packed)


def append_packed_entry(llvm_ir: str, program: loopir.Program) -> str:
    """The module text `llvm_ir` (from `render_program(program)`) with `name_packed` added."""
    return f"{llvm_ir}\n{render_packed_entry(program)}"
