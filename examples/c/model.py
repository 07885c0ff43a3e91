"""The model of the C example: logistic regression's loss, gradient and Hessian.

    python -m fusegrad build model.py -o build     # build/libmodel.so, libmodel.a, model.h

gives the C function (dims first, then inputs, then outputs; see build/model.h)

    int logistic(int64_t n, int64_t m, const double *w, const double *X, const double *y,
                 double *value, double *grad_w, double *hess_w);

The annotations name the dims, so the library works for every m and n.
"""

import numpy as np

import fusegrad as fg


@fg.compile_hessian
def logistic(w: fg.f64["n"], X: fg.f64["m", "n"], y: fg.f64["m"]):  # noqa: F821 (dim names)
    """Σᵢ log(1 + exp(−yᵢ xᵢᵀw)) for labels yᵢ ∈ {−1, +1}."""
    return np.sum(np.log1p(np.exp(-y * (X @ w))))
