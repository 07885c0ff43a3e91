"""Running a CudaProgram (compiler/cuda/plan.py) on a device, for one call.

    execute(device, cuda, dims, inputs, outputs)

`dims` maps each dim name to its value, `inputs` and `outputs` each buffer name to a
device pointer. The program's scratch buffers (accumulator slots included) are
allocated first, the launches run in order, with grid sizes evaluated from the dims,
and the scratch is freed once the device has finished with it. The device is a
CudaDevice (runtime/cuda/device.py) or the CPU emulation (runtime/cuda/emulate.py).
"""

from __future__ import annotations

from ...compiler import symbolic
from ...compiler.loopir import ITEM_BYTES


def execute(device, cuda, dims, inputs, outputs) -> None:
    module = device.load(cuda)
    pointers = {**inputs, **outputs}
    scratch = []
    try:
        for buffer in cuda.scratch:
            elements = symbolic.evaluate(symbolic.product(buffer.shape), dims)
            pointer = device.alloc(max(1, elements * ITEM_BYTES[buffer.dtype]))
            scratch.append(pointer)
            pointers[buffer.name] = pointer
        for launch in cuda.steps:
            grid = symbolic.evaluate(launch.grid, dims)
            args = [dims[name] if name in dims else pointers[name] for name in launch.args]
            device.launch(module, launch, grid, args)
    finally:
        if scratch:
            device.synchronize()  # the launches may still be reading it
        for pointer in scratch:
            device.free(pointer)
