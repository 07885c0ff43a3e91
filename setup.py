# Two extensions need a setup.py hook; all other metadata lives in pyproject.toml:
# the cffi C runtime (fusegrad.runtime._native) and the argument binder
# (fusegrad.runtime._binder, a CPython extension on NumPy's C API).
import numpy
from setuptools import Extension, setup

binder = Extension(
    "fusegrad.runtime._binder",
    sources=["csrc/fusegrad_binder.c"],
    include_dirs=[numpy.get_include(), "csrc"],
    depends=["csrc/fusegrad_rt.h"],
    extra_compile_args=["-O2"],
)

setup(cffi_modules=["runtime/_native_build.py:ffibuilder"], ext_modules=[binder])
