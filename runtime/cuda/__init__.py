"""The CUDA target: NVRTC, the driver API, device arrays and the launcher.

    nvrtc.py     CUDA C → CUBIN / PTX with NVRTC (the `nvidia-cuda-nvrtc` wheel), cached
    driver.py    libcuda.so.1 through cffi ABI mode: context, modules, memory, launches
    device.py    CudaDevice: the device protocol of execute.py on a real GPU
    arrays.py    device arrays in (`__cuda_array_interface__`, DLPack), DeviceArray out
    launcher.py  `target="cuda"`: binds arguments and runs a CudaProgram on a device

Nothing here loads a shared library at import time: NVRTC and the driver are opened at
the first CUDA call, so `import fusegrad` works on machines without either.
"""
