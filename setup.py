# The cffi extension (fusegrad.runtime._native) needs a setup.py hook;
# all other metadata lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["runtime/_native_build.py:ffibuilder"])
