"""Vectorizable transcendentals, generated as LLVM IR.

A libm call in a loop blocks the loop vectorizer (and `llvm.exp.*` is scalarized back
into libm calls by the code generator), so `exp`, `log`, `log1p`, `expm1`, `tanh`,
`logistic`, `sin`, `cos` and `pow` are built here from IEEE arithmetic, integer bit
manipulation of the float representation and `select`: straight-line code that LLVM
inlines (`alwaysinline`) and vectorizes like any other element-wise op.

    function = VECTOR_MATH[("exp", "float64")](module)   # defines fg_exp_f64 once per module
    value = builder.call(function, [x])

Everything is computed in double. A float32 function widens its argument, runs the
double algorithm with shorter polynomials (relative error ≲ 2^-40) and rounds once, so
float32 results are correctly rounded except in rare near-halfway cases (≤ 1 ulp).
Float64 results are within 1 ulp of the true value (measured in tests/test_mathlib.py).

Polynomials are minimax fits (Remez exchange in 200-digit decimal arithmetic, then
rounded to double); each table states the function it approximates, the interval and
the fit's relative error. Exact error terms use `llvm.fma` (a software fma keeps the
results on a CPU without FMA, only slower); polynomial steps use `llvm.fmuladd`, which
fuses where the target has FMA: the results differ by rounding only, within the bounds.
"""

from __future__ import annotations

import functools
import math
import struct
from decimal import Decimal, localcontext

from llvmlite import ir

from .mathlib_trig import cos_kernel, sin_kernel

F64, F32, I64 = ir.DoubleType(), ir.FloatType(), ir.IntType(64)


def _bits(x: float) -> int:
    """The IEEE 754 bits of a double, as a signed integer."""
    return struct.unpack("<q", struct.pack("<d", x))[0]


def _split(value: Decimal, bits: int) -> tuple[float, float]:
    """value ≈ hi + lo with hi of `bits` significant bits (hi · a small integer is exact)."""
    with localcontext() as context:
        context.prec = 60
        quantum = Decimal(2) ** (math.frexp(float(value))[1] - bits)
        hi = float((value / quantum).to_integral_value() * quantum)
        return hi, float(value - Decimal(hi))


with localcontext() as _context:
    _context.prec = 60
    _LN2 = Decimal(2).ln()
    INV_LN2 = float(1 / _LN2)
    TWO_THIRDS = _split(Decimal(2) / 3, 53)
    TWO_FIFTHS = _split(Decimal(2) / 5, 53)
LN2_HI, LN2_LO = _split(_LN2, 42)  # k·LN2_HI is exact for |k| < 2^11
SHIFTER = 1.5 * 2.0**52  # fl(t + SHIFTER) − SHIFTER = t rounded; the integer is in the low bits

#: (e^r − 1 − r)/r² on |r| ≤ ln2/2; relative error 2^-57 (double), 2^-40 (single).
EXP_Q = {
    "double": (
        0.5, 0.1666666666666667, 0.041666666666666616, 0.008333333333326167,
        0.0013888888888917957, 0.00019841269874720788, 2.4801587245742097e-05,
        2.7557255514259726e-06, 2.755734962042439e-07, 2.5105173611637264e-08,
        2.088937345532158e-09,
    ),
    "single": (
        0.4999999999995539, 0.16666666666738575, 0.041666666785841217, 0.008333333293519842,
        0.001388883920488331, 0.00019841309064042213, 2.486781781334712e-05,
        2.757735867503461e-06,
    ),
}
#: T(z) = (2·atanh(s)/s − 2)/z, z = s² ≤ (3 − 2√2)²; relative error 2^-51, 2^-43.
LOG_T = {
    "double": (
        0.666666666666667, 0.3999999999989918, 0.2857142862610609, 0.22222211115835477,
        0.18182890368918467, 0.15331684010120875, 0.14616875683547315,
    ),
    "single": (
        0.6666666666737794, 0.3999999879423184, 0.2857175506473596, 0.22191372039985088,
        0.1936314330160505,
    ),
}
#: W(z) = (V(z) − 2/3 − 2z/5)/z², V(z) = (2·atanh(s) − 2s)/s³, on the same z (pow's log);
#: relative error 2^-50.
POW_LOG_W = (
    0.285714285714286, 0.22222222222140592, 0.18181818226106877, 0.15384606385648902,
    0.13334202246355567, 0.11721806835197651, 0.11566409708921324,
)


class MathBuilder:
    """An IRBuilder for straight-line double code: Python numbers become constants.

    Integer methods work on i64 (`and_`, `or_`, `not_` also on i1 conditions); `bits` and
    `double` reinterpret between i64 and double.
    """

    def __init__(self, builder: ir.IRBuilder):
        self.builder = builder

    # -- values ------------------------------------------------------------------------
    def value(self, x) -> ir.Value:
        return x if isinstance(x, ir.Value) else ir.Constant(F64, float(x))

    def int(self, x) -> ir.Value:
        return x if isinstance(x, ir.Value) else ir.Constant(I64, int(x))

    def bits(self, x):
        return self.builder.bitcast(self.value(x), I64)

    def double(self, i):
        return self.builder.bitcast(i, F64)

    # -- floating point ------------------------------------------------------------------
    def add(self, a, b):
        return self.builder.fadd(self.value(a), self.value(b))

    def sub(self, a, b):
        return self.builder.fsub(self.value(a), self.value(b))

    def mul(self, a, b):
        return self.builder.fmul(self.value(a), self.value(b))

    def div(self, a, b):
        return self.builder.fdiv(self.value(a), self.value(b))

    def neg(self, a):
        return self.builder.fneg(self.value(a))

    def _intrinsic(self, name, *args):
        ftype = ir.FunctionType(F64, [F64] * len(args))
        function = self.builder.module.declare_intrinsic(name, [F64], ftype)
        return self.builder.call(function, [self.value(a) for a in args])

    def fma(self, a, b, c):
        """a·b + c rounded once: exact error terms rely on it."""
        return self._intrinsic("llvm.fma", a, b, c)

    def madd(self, a, b, c):
        """a·b + c, fused where the target has FMA (polynomials, non-critical steps)."""
        return self._intrinsic("llvm.fmuladd", a, b, c)

    def abs(self, a):
        return self._intrinsic("llvm.fabs", a)

    def copysign(self, magnitude, sign):
        return self._intrinsic("llvm.copysign", magnitude, sign)

    def trunc(self, a):
        return self._intrinsic("llvm.trunc", a)

    def horner(self, x, coefficients):
        """c0 + x·(c1 + x·(c2 + ...))."""
        result = self.value(coefficients[-1])
        for c in reversed(coefficients[:-1]):
            result = self.madd(result, x, c)
        return result

    # -- exact sums and products (error-free transformations) ----------------------------
    def fast_two_sum(self, a, b):
        """hi + lo = a + b exactly, for |a| ≥ |b| or a = 0."""
        hi = self.add(a, b)
        return hi, self.sub(b, self.sub(hi, a))

    def two_prod(self, a, b):
        """hi + lo = a·b exactly (no underflow)."""
        hi = self.mul(a, b)
        return hi, self.fma(a, b, self.neg(hi))

    # -- comparisons and selection -------------------------------------------------------
    def cmp(self, op, a, b):
        """Ordered comparison: false when either side is NaN."""
        return self.builder.fcmp_ordered(op, self.value(a), self.value(b))

    def ucmp(self, op, a, b):
        """Unordered comparison: true when either side is NaN ("uno": either is NaN)."""
        return self.builder.fcmp_unordered(op, self.value(a), self.value(b))

    def select(self, condition, a, b):
        """condition ? a : b; Python numbers are double constants."""
        return self.builder.select(condition, self.value(a), self.value(b))

    def clamp(self, x, lo, hi):
        """min(max(x, lo), hi) that keeps NaN."""
        x = self.select(self.cmp(">", x, hi), hi, x)
        return self.select(self.cmp("<", x, lo), lo, x)

    # -- integers (i64) ------------------------------------------------------------------
    def iadd(self, a, b):
        return self.builder.add(self.int(a), self.int(b))

    def isub(self, a, b):
        return self.builder.sub(self.int(a), self.int(b))

    def imul(self, a, b):
        return self.builder.mul(self.int(a), self.int(b))

    def shl(self, a, n):
        return self.builder.shl(self.int(a), self.int(n))

    def ashr(self, a, n):
        return self.builder.ashr(self.int(a), self.int(n))

    def lshr(self, a, n):
        return self.builder.lshr(self.int(a), self.int(n))

    def and_(self, a, b):
        return self.builder.and_(self.int(a), self.int(b))

    def or_(self, a, b):
        return self.builder.or_(self.int(a), self.int(b))

    def xor(self, a, b):
        return self.builder.xor(self.int(a), self.int(b))

    def not_(self, a):
        return self.builder.not_(a)

    def icmp(self, op, a, b):
        return self.builder.icmp_signed(op, self.int(a), self.int(b))

    def small_int_to_double(self, i):
        """Exact for |i| < 2^51, without an i64 → double conversion instruction."""
        return self.sub(self.double(self.iadd(i, _bits(SHIFTER))), SHIFTER)

    def pow2(self, k):
        """2^k for −1022 ≤ k ≤ 1023."""
        return self.double(self.shl(self.iadd(k, 1023), 52))


# -- exp, expm1 ---------------------------------------------------------------------------
def _exp_reduce(m, x, low, lowest):
    """x + low = k·ln2 + r_hi + r_lo, |r_hi| ≲ ln2/2 exact, r_lo tiny (Cody–Waite).

    x is first clamped to [lowest, 709.79] (NaN stays NaN), which keeps 2^k in range;
    lowest None: the caller guarantees x in range (no clamp). Returns (k as i64, r_hi, r_lo).
    """
    clamped = x if lowest is None else m.clamp(x, lowest, 709.79)
    t = m.madd(clamped, INV_LN2, SHIFTER)
    k_float = m.sub(t, SHIFTER)
    k = m.isub(m.bits(t), _bits(SHIFTER))
    r_hi = m.madd(m.neg(k_float), LN2_HI, clamped)  # exact: k·LN2_HI is, and Sterbenz
    if low is not None:
        low = m.select(m.cmp("==", x, clamped), low, 0.0)  # a clamped x drops its tail
    r_lo = m.madd(m.neg(k_float), LN2_LO, 0.0 if low is None else low)
    return k, r_hi, r_lo


def _exp_tail(m, r_hi, r_lo, precision):
    """e^(r_hi + r_lo) − 1 − r_hi = r_hi²·Q(r_hi) + r_lo·e^r_hi (to 2^-57 relative)."""
    t = m.mul(m.mul(r_hi, r_hi), m.horner(r_hi, EXP_Q[precision]))
    return m.madd(r_lo, m.add(1.0, m.add(r_hi, t)), t)


def _ldexp(m, value, k):
    """value · 2^k for |k| ≤ 1080 in two exact steps, so 2^k never leaves the range and
    a subnormal result is rounded once."""
    half = m.ashr(k, 1)
    return m.mul(m.mul(value, m.pow2(half)), m.pow2(m.isub(k, half)))


def exp_pair(m, x, low, precision):
    """e^(x + low) = hi + lo, hi the correctly rounded sum; low is a tiny tail of x (pow's
    y·log x) or None.

    e^x = 2^k·(1 + r_hi + tail) with 1 + r_hi summed exactly: error < 0.6 ulp (measured
    0.597). Overflow at x > 709.78, subnormal results below −708.4, 0 below −745.13; NaN
    propagates. (lo is exact only while hi is normal.)
    """
    k, r_hi, r_lo = _exp_reduce(m, x, low, -746.0)
    hi, lo = m.fast_two_sum(1.0, r_hi)
    hi, lo = m.fast_two_sum(hi, m.add(lo, _exp_tail(m, r_hi, r_lo, precision)))
    return _ldexp(m, hi, k), _ldexp(m, lo, k)


def exp(m, x, precision):
    """e^x = 2^k·(1 + (r_hi + tail)): r_hi + tail rounds by ≤ ½ ulp of |r| ≤ ln2/2, i.e.
    ≤ 0.18 ulp of the result, before the last rounding: error < 0.7 ulp (exp_pair forms
    1 + r_hi exactly instead, for the low part pow needs)."""
    k, r_hi, r_lo = _exp_reduce(m, x, None, -746.0)
    return _ldexp(m, m.add(1.0, m.add(r_hi, _exp_tail(m, r_hi, r_lo, precision))), k)


def expm1_parts(m, x, precision):
    """e^x − 1 = (hi + lo)·extra, extra ∈ {1, 2} (only for x > 709.09).

    With s = 2^k: e^x − 1 = (s − 1) + s·r_hi + s·tail, where s − 1 and s·r_hi are exact
    and their sum is formed exactly (|s − 1| ≥ |s·r_hi|): error < 0.8 ulp (measured
    0.795). x < −40 (clamped) gives −1 exactly, as e^x < 2^-54 there.
    """
    k, r_hi, r_lo = _exp_reduce(m, x, None, -40.0)
    k_low = m.select(m.icmp(">", k, 1023), m.int(1023), k)
    s = m.pow2(k_low)
    tail = m.mul(s, _exp_tail(m, r_hi, r_lo, precision))
    hi, lo = m.fast_two_sum(m.sub(s, 1.0), m.mul(s, r_hi))
    hi, lo = m.fast_two_sum(hi, m.add(lo, tail))
    return hi, lo, m.pow2(m.isub(k, k_low))


def expm1(m, x, precision):
    hi, lo, extra = expm1_parts(m, x, precision)
    result = m.mul(m.add(hi, lo), extra)
    return m.select(m.cmp("==", x, 0.0), x, result)  # expm1(−0) = −0


def _divide_pair(m, n_hi, n_lo, d_hi, d_lo):
    """(n_hi + n_lo)/(d_hi + d_lo) to ≈ 0.5 ulp: a product by 1/d_hi, then one
    correction with the exact residual n_hi − q·d_hi (fma)."""
    inverse = m.div(1.0, d_hi)
    q = m.mul(n_hi, inverse)
    residual = m.add(m.fma(m.neg(q), d_hi, n_hi), n_lo)
    return m.madd(m.sub(residual, m.mul(q, d_lo)), inverse, q)


def logistic(m, x, precision):
    """σ(x) = 1/(1 + e^−x) for x ≥ 0, e^x/(1 + e^x) below, with E = e^−|x| (no overflow).

    E and 1 + E are pairs; the quotient is corrected once: error < 0.6 ulp (measured
    0.586).
    σ(x) = 1 exactly for x > 37.4, subnormal for x < −708.4, 0 below −745.2.
    """
    e, e_lo = exp_pair(m, m.neg(m.abs(x)), None, precision)
    d_hi, d_lo = m.fast_two_sum(1.0, e)
    d_lo = m.add(d_lo, e_lo)
    positive = m.cmp(">=", x, 0.0)
    numerator = m.select(positive, 1.0, e)
    return _divide_pair(m, numerator, m.select(positive, 0.0, e_lo), d_hi, d_lo)


def tanh(m, x, precision):
    """tanh|x| = 1 − q, q = 2/D, D = e^(2|x|) + 1 as an unevaluated pair (hi + lo): with
    s = 2^k and p = e^r − 1 = p_hi + p_lo, D = (s + 1) + s·p_hi + s·p_lo, where s + 1
    and s·p_hi are exact and their sum is formed exactly. q = 2/D_hi rounded, plus the
    correction q·w/2 from the exact residual w = 2 − q·D_hi − q·D_lo (fma); 1 − q is
    split exactly (q ≤ 1), so the result is rounded once. The pair arithmetic is exact to
    ~2^-100 for |x| ≥ 2^-49: the error is the tail's (as in expm1) plus that rounding,
    measured 0.823 ulp (at x ≈ 0.176, k = 1) over 10^8 arguments, ≤ 0.501 below 2^-26;
    the results equal those of the former E/(E + 2) form (E = expm1(2|x|) as a pair,
    two_sum, _divide_pair) on all 1.6·10^8 float64 arguments compared and on every
    float32 in [1e-30, 10], with 38 floating-point arithmetic instructions instead of 44
    (and one more compare and select). q > 1 − 2^-49 (|x| < ~2^-49) gives x, correctly
    rounded (tanh(±0) = ±0, subnormals); there D_hi ≈ 2 would leave the result to
    D_lo's rounding and the w² term. |x| > 20 (clamped) gives ±1; the sign is copied
    from x, tanh(NaN) = NaN.
    """
    a = m.abs(x)
    a = m.select(m.cmp(">", a, 20.0), 20.0, a)  # keeps NaN
    k, r_hi, r_lo = _exp_reduce(m, m.add(a, a), None, None)  # 2|x| ≤ 40: no clamp
    p_hi, p_lo = m.fast_two_sum(r_hi, _exp_tail(m, r_hi, r_lo, precision))
    s = m.pow2(k)
    d_hi, d_lo = m.fast_two_sum(m.add(s, 1.0), m.mul(s, p_hi))  # s + 1 exact for k ≤ 52
    d_lo = m.madd(s, p_lo, d_lo)
    q = m.div(2.0, d_hi)
    w = m.fma(m.neg(q), d_lo, m.fma(m.neg(q), d_hi, 2.0))  # 2 − q·D
    one_minus_q = m.sub(1.0, q)
    c = m.add(q, m.sub(one_minus_q, 1.0))  # q − (1 − one_minus_q): its rounding error
    # 2/D = q + w/D ≈ q + q·w/2: exact to w²/4, negligible for |x| ≥ 2^-49
    result = m.copysign(m.sub(one_minus_q, m.madd(m.mul(q, w), 0.5, c)), x)
    return m.select(m.cmp(">", q, 1.0 - 2.0**-49), x, result)  # q ≈ 1 − |x|


# -- log, log1p, pow -----------------------------------------------------------------------
def _decompose(m, x, subnormals=True):
    """x = 2^e·(1 + f), 1 + f ∈ [√½, √2), f exact, for x > 0 finite: (e as double, f)."""
    if subnormals:
        tiny = m.cmp("<", x, 2.0**-1022)
        x = m.select(tiny, m.mul(x, 2.0**54), x)
    shifted = m.isub(m.bits(x), _bits(0.5**0.5))  # the exponent of x/√½
    e = m.ashr(shifted, 52)
    f = m.sub(m.double(m.isub(m.bits(x), m.shl(e, 52))), 1.0)
    if subnormals:
        e = m.iadd(e, m.select(tiny, m.int(-54), m.int(0)))
    return m.small_int_to_double(e), f


def _log_1pf(m, e, f, correction, precision):
    """e·ln2 + log(1 + f) + correction, |correction| ≪ ulp.

    log(1 + f) = 2·atanh(s), s = f/(2 + f): f − (hfsq − s·(hfsq + R(s²))) with
    hfsq = f²/2 and R = z·T(z) (fdlibm's arrangement): error < 0.8 ulp (measured 0.757,
    log1p 0.767).
    """
    s = m.div(f, m.add(2.0, f))
    z = m.mul(s, s)
    r = m.mul(z, m.horner(z, LOG_T[precision]))
    hfsq = m.mul(m.mul(0.5, f), f)
    low = m.madd(e, LN2_LO, correction)
    low = m.madd(s, m.add(hfsq, r), low)
    return m.madd(e, LN2_HI, m.neg(m.sub(m.sub(hfsq, low), f)))


def log(m, x, precision):
    e, f = _decompose(m, x)
    result = _log_1pf(m, e, f, 0.0, precision)
    result = m.select(m.cmp("==", x, float("inf")), x, result)
    result = m.select(m.cmp("==", x, 0.0), float("-inf"), result)
    return m.select(m.ucmp("<", x, 0.0), float("nan"), result)  # x < 0 or NaN


def log1p(m, x, precision):
    """log(u) + (x − (u − 1))/u for u = 1 + x rounded: the second term is the rounding
    error of u, to first order. |x| < 2^-54 returns x (sign of zero, subnormals)."""
    u = m.add(1.0, x)
    e, f = _decompose(m, u, subnormals=False)
    correction = m.div(m.sub(x, m.sub(u, 1.0)), u)
    result = _log_1pf(m, e, f, correction, precision)
    result = m.select(m.cmp("<", m.abs(x), 2.0**-54), x, result)
    result = m.select(m.cmp("==", x, float("inf")), x, result)
    result = m.select(m.cmp("==", x, -1.0), float("-inf"), result)
    return m.select(m.ucmp("<", x, -1.0), float("nan"), result)  # x < −1 or NaN


def _log_pair(m, x):
    """log x = hi + lo to 2^-66 relative (x > 0 finite), for pow.

    As `_log_1pf`, with s = f/(2 + f) = s_hi + s_lo exact to 2^-106 and
    log(1 + f) = 2s + s³·V(s²), V(z) = 2/3 + 2z/5 + z²·W(z): s², s³, V and s³·V are
    pairs, only z²·W (≤ 2^-12 of V) is a plain double.
    """
    e, f = _decompose(m, x)
    d_hi = m.add(2.0, f)
    d_lo = m.sub(f, m.sub(d_hi, 2.0))  # 2 + f = d_hi + d_lo exactly
    inverse = m.div(1.0, d_hi)
    s_hi = m.mul(f, inverse)
    residual = m.fma(m.neg(s_hi), d_hi, f)  # f − s_hi·d_hi exactly
    s_lo = m.mul(m.madd(m.neg(s_hi), d_lo, residual), inverse)
    z, z_lo = m.two_prod(s_hi, s_hi)
    z_lo = m.madd(m.mul(2.0, s_hi), s_lo, z_lo)
    cube, cube_lo = m.two_prod(s_hi, z)
    cube_lo = m.add(cube_lo, m.madd(s_hi, z_lo, m.mul(s_lo, z)))
    v, v_lo = m.two_prod(z, TWO_FIFTHS[0])
    v_lo = m.add(v_lo, m.madd(z, TWO_FIFTHS[1], m.mul(z_lo, TWO_FIFTHS[0])))
    v, v_lo2 = m.fast_two_sum(TWO_THIRDS[0], v)
    tail = m.mul(m.mul(z, z), m.horner(z, POW_LOG_W))
    v_lo = m.add(v_lo2, m.add(v_lo, m.add(TWO_THIRDS[1], tail)))
    p, p_lo = m.two_prod(cube, v)
    p_lo = m.add(p_lo, m.madd(cube, v_lo, m.mul(cube_lo, v)))
    hi, lo = m.fast_two_sum(m.mul(2.0, s_hi), p)
    lo = m.add(lo, m.madd(2.0, s_lo, p_lo))
    hi, lo2 = m.fast_two_sum(m.mul(e, LN2_HI), hi)
    return m.fast_two_sum(hi, m.add(lo2, m.madd(e, LN2_LO, lo)))


def pow(m, x, y, precision):
    """x^y = ±e^(y·log|x|), with C99 / IEEE 754 special cases.

    Double: log|x| as a pair (2^-66), y·log|x| as an exact pair, exp of the pair: error
    < 0.8 ulp over the whole range (measured 0.75). Single: plain double log and exp.
    """
    ax = m.abs(x)
    if precision == "double":
        log_hi, log_lo = _log_pair(m, ax)
        z = m.mul(y, log_hi)
        z_lo = m.madd(y, log_lo, m.fma(y, log_hi, m.neg(z)))
        magnitude = exp_pair(m, z, z_lo, precision)[0]
    else:
        e, f = _decompose(m, ax)
        magnitude = exp(m, m.mul(y, _log_1pf(m, e, f, 0.0, precision)), precision)

    inf = float("inf")
    y_integer = m.cmp("==", m.trunc(y), y)
    half_y = m.mul(y, 0.5)
    y_odd = m.and_(y_integer, m.cmp("!=", m.trunc(half_y), half_y))
    y_negative = m.cmp("<", y, 0.0)
    # |x| = 0, |x| = ∞ and (|x| = 1, y = ±∞) are limits: the core sees log = ±∞ or ∞·0
    result = m.select(m.cmp("==", ax, 0.0), m.select(y_negative, inf, 0.0), magnitude)
    result = m.select(m.cmp("==", ax, inf), m.select(y_negative, 0.0, inf), result)
    result = m.select(m.and_(m.cmp("==", m.abs(y), inf), m.cmp("==", ax, 1.0)), 1.0, result)
    # x < 0 or −0: an odd power is negative; a finite x < 0 to a non-integer y is NaN
    result = m.select(m.and_(m.icmp("<", m.bits(x), 0), y_odd), m.neg(result), result)
    finite_negative = m.and_(m.cmp("<", x, 0.0), m.cmp("!=", ax, inf))
    result = m.select(m.and_(finite_negative, m.not_(y_integer)), float("nan"), result)
    result = m.select(m.ucmp("uno", x, y), float("nan"), result)
    return m.select(m.or_(m.cmp("==", x, 1.0), m.cmp("==", y, 0.0)), 1.0, result)  # even NaN


# -- functions in a module ----------------------------------------------------------------
#: op name → IR emitter, `emit(m, *double_args, precision) -> double`.
_EMITTERS = {
    "exp": exp, "log": log, "log1p": log1p, "expm1": expm1, "tanh": tanh,
    "logistic": logistic, "sin": sin_kernel, "cos": cos_kernel, "pow": pow,
}
_ARITY = {"pow": 2}
_FORMATS = {"float64": (F64, "f64", "double"), "float32": (F32, "f32", "single")}


def define(op: str, dtype: str, module: ir.Module) -> ir.Function:
    """`fg_<op>_<f64|f32>` in `module`: internal, always inlined, defined once."""
    _, suffix, _ = _FORMATS[dtype]
    name = f"fg_{op}_{suffix}"
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    ftype, text, needs = _rendered(op, dtype)
    for value in needs:
        if value.name not in module.globals:
            _declare_like(module, value)
    function = _RenderedFunction(module, ftype, name, text)
    function.linkage = "internal"
    function.attributes.add("alwaysinline")
    function.attributes.add("nounwind")
    return function


@functools.cache
def _rendered(op: str, dtype: str) -> tuple:
    """(type, IR text, other globals it uses) of the function, built once per process:
    its IR depends on nothing but the op and the dtype (building and printing it took
    0.4–1.7 ms per module)."""
    ftype, suffix, precision = _FORMATS[dtype]
    module = ir.Module()
    arity = _ARITY.get(op, 1)
    function = ir.Function(module, ir.FunctionType(ftype, [ftype] * arity), f"fg_{op}_{suffix}")
    function.linkage = "internal"
    function.attributes.add("alwaysinline")
    function.attributes.add("nounwind")
    builder = ir.IRBuilder(function.append_basic_block("entry"))
    m = MathBuilder(builder)
    args = list(function.args)
    if ftype is F32:
        args = [builder.fpext(a, F64) for a in args]
    result = _EMITTERS[op](m, *args, precision)
    if ftype is F32:
        result = builder.fptrunc(result, F32)
    builder.ret(result)
    needs = tuple(g for g in module.global_values if g is not function)
    return function.ftype, str(function), needs


class _RenderedFunction(ir.Function):
    """A function defined by IR text rendered before (see `_rendered`)."""

    def __init__(self, module: ir.Module, ftype: ir.FunctionType, name: str, text: str):
        super().__init__(module, ftype, name)
        self.text = text

    @property
    def is_declaration(self) -> bool:
        return False

    def descr(self, buf):
        buf.append(self.text)


def _declare_like(module: ir.Module, value):
    """The intrinsic declaration or constant table `value` (of another module) in `module`."""
    if isinstance(value, ir.Function):
        ir.Function(module, value.ftype, value.name)
    elif isinstance(value, ir.GlobalVariable):
        table = ir.GlobalVariable(module, value.value_type, value.name)
        table.linkage = value.linkage
        table.global_constant = value.global_constant
        table.initializer = value.initializer
    else:
        raise TypeError(f"cannot copy {value!r} into another module")


#: (op name, dtype) → `define(module)`: the vectorizable version of a libm function.
VECTOR_MATH = {
    (op, dtype): functools.partial(define, op, dtype) for op in _EMITTERS for dtype in _FORMATS
}
