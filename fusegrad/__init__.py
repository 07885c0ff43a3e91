"""fusegrad: compile array functions and their derivatives into fused native kernels.

    import numpy as np
    import fusegrad as fg

    @fg.compile_grad
    def loss(w, X, y):
        return np.sum(np.log1p(np.exp(-y * (X @ w))))

    value, grad = loss(w, X, y)
"""

from .annotations import f32, f64
from .batched import compile_hessian, hessian, jacobian, value_grad_hessian, vmap
from .api import CompiledFunction, compile, compile_grad
from .compiler.errors import CompileError, DTypeError, FusegradError, ShapeError, TraceError
from .compiler.numpy_api import (
    abs, absolute, add, amax, amin, astype, broadcast_to, clip, cos, divide, dot, equal, exp,
    expand_dims, expm1, full_like, greater, greater_equal, less, less_equal, log, log1p,
    log_softmax, logaddexp, logical_and, logical_not, logical_or, logsumexp, matmul, max,
    maximum, mean, min, minimum, multiply, negative, not_equal, ones_like, power, reciprocal,
    relu, reshape, sigmoid, sign, sin, softmax, softplus, sqrt, square, squeeze, stop_gradient, subtract, sum,
    tanh, transpose, where, zeros_like,
)
from .transforms import check_grad, grad, hvp, jvp, value_and_grad, vjp

__version__ = "0.1.0"

__all__ = [
    "compile", "compile_grad", "grad", "value_and_grad", "jvp", "vjp", "hvp", "check_grad",
    "CompiledFunction", "f32", "f64",
    "vmap", "jacobian", "hessian", "value_grad_hessian", "compile_hessian",
    "FusegradError", "ShapeError", "DTypeError", "TraceError", "CompileError",
    "abs", "absolute", "add", "amax", "amin", "astype", "broadcast_to", "clip", "cos", "divide",
    "dot", "equal", "exp", "expand_dims", "expm1", "full_like", "greater", "greater_equal",
    "less", "less_equal", "log", "log1p", "log_softmax", "logaddexp", "logical_and",
    "logical_not", "logical_or", "logsumexp", "matmul", "max", "maximum", "mean", "min",
    "minimum", "multiply", "negative", "not_equal", "ones_like", "power", "reciprocal", "relu",
    "reshape", "sigmoid", "sign", "sin", "softmax", "softplus", "sqrt", "square", "squeeze",
    "stop_gradient",
    "subtract", "sum", "tanh", "transpose", "where", "zeros_like",
]
