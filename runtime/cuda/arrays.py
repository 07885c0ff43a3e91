"""Arrays on the device: foreign ones in (no copy), DeviceArray out.

    view = device_view("X", value)    # DeviceView(pointer, shape, dtype, keepalive) or None
    out = DeviceArray(device, shape, dtype)   # owns device memory; freed with the object
    out.get()                                 # a NumPy copy (also np.asarray(out))

A device input is anything exposing `__cuda_array_interface__` (versions 2 and 3: CuPy,
Numba, PyTorch, DeviceArray) or DLPack (`__dlpack__` + `__dlpack_device__` with device
type kDLCUDA). Its memory is used in place, so it must be float32/float64, C-contiguous
and on a CUDA device; anything else is an error naming the argument. A DLPack capsule is
read with ctypes and kept alive (not consumed) for the call, so its producer frees it.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass

import numpy as np

from ...compiler.errors import DTypeError, FusegradError

_TYPESTRS = {"<f8": np.dtype("float64"), "<f4": np.dtype("float32")}

# DLPack (dlpack.h): DLDeviceType values and DLDataTypeCode kDLFloat
KDL_CPU, KDL_CUDA, KDL_CUDA_HOST, KDL_CUDA_MANAGED = 1, 2, 3, 13
_KDL_FLOAT = 2
_DLPACK_DEVICE_NAMES = {1: "CPU", 2: "CUDA", 3: "CUDA host", 4: "OpenCL", 7: "Vulkan",
                        8: "Metal", 10: "ROCm", 13: "CUDA managed"}  # fmt: skip


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p)]  # fmt: skip


_get_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_capsule_pointer.restype = ctypes.c_void_p
_get_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule_is_valid = ctypes.pythonapi.PyCapsule_IsValid
_capsule_is_valid.restype = ctypes.c_int
_capsule_is_valid.argtypes = [ctypes.py_object, ctypes.c_char_p]


@dataclass(frozen=True)
class DeviceView:
    """Device memory of an argument, used in place for one call."""

    pointer: int
    shape: tuple[int, ...]
    dtype: np.dtype
    keepalive: object  # the array or DLPack capsule that owns the memory

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def is_device_array(value) -> bool:
    """True for objects that live on a CUDA device (by either protocol)."""
    if isinstance(value, np.ndarray):
        return False
    if _has_array_interface(value):
        return True
    if hasattr(value, "__dlpack_device__") and hasattr(value, "__dlpack__"):
        try:
            device_type = int(value.__dlpack_device__()[0])
        except Exception:  # noqa: BLE001 - not a usable DLPack object: treat as host
            return False
        return device_type not in (KDL_CPU,)
    return False


def _has_array_interface(value) -> bool:
    """hasattr that also counts a property that raises something other than
    AttributeError (PyTorch: a tensor that requires grad) as present, so that the
    error reaches the user with the argument's name."""
    try:
        getattr(value, "__cuda_array_interface__")
    except AttributeError:
        return False
    except Exception:  # noqa: BLE001 - reported by _from_array_interface
        return True
    return True


def device_view(name: str, value) -> DeviceView | None:
    """The device memory of argument `name`, or None if it is not a device array."""
    if not is_device_array(value):
        return None
    if _has_array_interface(value):
        return _from_array_interface(name, value)
    return _from_dlpack(name, value)


def _from_array_interface(name: str, value) -> DeviceView:
    try:
        interface = value.__cuda_array_interface__
    except Exception as exc:  # noqa: BLE001 - e.g. a PyTorch tensor that requires grad
        raise FusegradError(
            f"argument {name!r}: reading its __cuda_array_interface__ failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(interface, dict):
        raise FusegradError(f"argument {name!r}: __cuda_array_interface__ is not a dict")
    for key in ("shape", "typestr", "data"):
        if key not in interface:
            raise FusegradError(f"argument {name!r}: __cuda_array_interface__ has no {key!r}")
    version = interface.get("version", 0)
    if version not in (2, 3):
        raise FusegradError(
            f"argument {name!r}: __cuda_array_interface__ version {version} is not "
            "supported (2 or 3)"
        )
    if interface.get("mask") is not None:
        raise FusegradError(f"argument {name!r}: masked device arrays are not supported")
    shape = tuple(int(d) for d in interface["shape"])
    dtype = _TYPESTRS.get(interface["typestr"])
    if dtype is None:
        raise DTypeError(
            f"argument {name!r} is a device array of typestr {interface['typestr']!r}; "
            "expected float32 ('<f4') or float64 ('<f8')"
        )
    strides = interface.get("strides")
    if strides is not None and not _c_contiguous(shape, strides, dtype.itemsize):
        raise FusegradError(
            f"argument {name!r} is a device array with strides {tuple(strides)} (bytes) "
            f"for shape {shape}; it must be C-contiguous (make a contiguous copy first)"
        )
    pointer, _readonly = interface["data"]
    if pointer is None or (pointer == 0 and math.prod(shape) != 0):
        raise FusegradError(f"argument {name!r} is a device array with a null pointer")
    return DeviceView(int(pointer), shape, dtype, value)


def _from_dlpack(name: str, value) -> DeviceView:
    device_type, _device_id = value.__dlpack_device__()
    if int(device_type) not in (KDL_CUDA, KDL_CUDA_MANAGED):
        where = _DLPACK_DEVICE_NAMES.get(int(device_type), f"device type {device_type}")
        raise FusegradError(
            f"argument {name!r} is a DLPack tensor on {where}; target='cuda' takes NumPy "
            "arrays or CUDA device arrays"
        )
    capsule = value.__dlpack__()
    if not _capsule_is_valid(capsule, b"dltensor"):
        raise FusegradError(f"argument {name!r}: __dlpack__ did not return a 'dltensor' capsule")
    managed = _DLManagedTensor.from_address(_get_capsule_pointer(capsule, b"dltensor"))
    return view_of_dltensor(name, managed.dl_tensor, keepalive=(value, capsule))


def view_of_dltensor(name: str, tensor: _DLTensor, keepalive) -> DeviceView:
    """Check a DLTensor (float32/64, one lane, C-contiguous) and view its memory."""
    code, bits, lanes = tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes
    if code != _KDL_FLOAT or bits not in (32, 64) or lanes != 1:
        raise DTypeError(
            f"argument {name!r} is a DLPack tensor of type (code {code}, {bits} bits, "
            f"{lanes} lanes); expected float32 or float64"
        )
    dtype = np.dtype(f"float{bits}")
    shape = tuple(int(tensor.shape[k]) for k in range(tensor.ndim))
    if tensor.strides:
        strides = tuple(int(tensor.strides[k]) * dtype.itemsize for k in range(tensor.ndim))
        if not _c_contiguous(shape, strides, dtype.itemsize):
            raise FusegradError(
                f"argument {name!r} is a DLPack tensor with strides "
                f"{tuple(s // dtype.itemsize for s in strides)} (elements) for shape "
                f"{shape}; it must be C-contiguous"
            )
    pointer = (tensor.data or 0) + tensor.byte_offset
    return DeviceView(pointer, shape, dtype, keepalive)


def _c_contiguous(shape, strides, itemsize: int) -> bool:
    """Byte strides of a C-contiguous layout (axes of extent 1 may have any stride)."""
    if len(strides) != len(shape):
        return False
    if math.prod(shape) == 0:
        return True
    expected = itemsize
    for extent, stride in zip(reversed(shape), reversed(strides)):
        if extent != 1 and int(stride) != expected:
            return False
        expected *= extent
    return True


class DeviceArray:
    """A C-contiguous float array in device memory, freed when the object goes away.

    Exposes `__cuda_array_interface__` (version 3), so it can be passed back to a
    `target="cuda"` function or to CuPy / PyTorch / Numba without a copy."""

    def __init__(self, device, shape, dtype):
        self.device = device
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.pointer = 0
        self.pointer = device.alloc(self.nbytes)

    @classmethod
    def from_host(cls, device, array) -> DeviceArray:
        host = np.ascontiguousarray(array)
        if host.dtype not in (np.float32, np.float64):
            raise DTypeError(f"DeviceArray holds float32 or float64, got {host.dtype}")
        result = cls(device, host.shape, host.dtype)
        device.upload(result.pointer, host)
        return result

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def __cuda_array_interface__(self) -> dict:
        return {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "data": (self.pointer, False),
            "strides": None,
            "version": 3,
        }

    def get(self) -> np.ndarray:
        """A host copy."""
        host = np.empty(self.shape, self.dtype)
        self.device.synchronize()
        self.device.download(host, self.pointer)
        return host

    def __array__(self, dtype=None, copy=None):
        host = self.get()
        return host if dtype is None else host.astype(dtype, copy=False)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d DeviceArray")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype.name})"

    def __del__(self):
        pointer, self.pointer = getattr(self, "pointer", 0), 0
        if pointer:
            try:
                self.device.free(pointer)
            except Exception:  # noqa: BLE001 - freeing at interpreter exit may fail
                pass
