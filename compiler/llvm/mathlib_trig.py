"""sin and cos as vectorizable LLVM IR (see `mathlib.py`, which defines the functions).

    x = (q + f)·π/2,  q an integer,  |f| ≤ 1/2,  r = f·π/2,  |r| ≤ π/4
    sin x = ±sin r or ±cos r, by q mod 4

The reduction is exact integer arithmetic for every finite argument (Payne–Hanek):
x = M·2^e with an integer mantissa M; the bits of 2/π that matter for x·2/π mod 4 are a
window starting at bit e − 1, precomputed per exponent (a table of 2/π's bits, read with
a gather), and M·window mod 2^L is a multi-word product of 32-bit limbs (zero-extended
i64 multiplies, which vector units have). No argument is too large and no branch is
taken. The closest a double comes to a multiple of π/2 is ≈ 2^-61 (at
x = 6381956970095103·2^797), so double needs L = 192 bits (f to 2^-126); single (24-bit
M) needs 96, and gets 128.

r = f·π/2 is formed as a pair r_hi + r_lo (double); the kernels are minimax polynomials
on |r| ≤ π/4: sin r = r + r³·S(r²), cos r = 1 − r²/2 + r⁴·C(r²), with the tail r_lo
applied to first order. Error < 0.85 ulp (double; measured 0.842) over the whole range.
"""

from __future__ import annotations

import functools
from fractions import Fraction

from llvmlite import ir

I64 = ir.IntType(64)

#: (sin r − r)/r³ in z = r² ≤ (π/4)²; relative error 2^-52 (double), 2^-42 (single).
SIN_S = {
    "double": (
        -0.16666666666666666, 0.008333333333330925, -0.00019841269836727807,
        2.7557316088605016e-06, -2.505112926343231e-08, 1.5917962017885534e-10,
    ),
    "single": (
        -0.16666666666663846, 0.008333333331059067, -0.00019841266900664836,
        2.7555986699120204e-06, -2.480529350649396e-08,
    ),
}
#: (cos r − 1 + r²/2)/r⁴ in z = r² ≤ (π/4)²; relative error 2^-54, 2^-44.
COS_C = {
    "double": (
        0.041666666666666664, -0.0013888888888887387, 2.480158729875324e-05,
        -2.7557317266082143e-07, 2.087614522245103e-09, -1.1382564620590216e-11,
    ),
    "single": (
        0.04166666666666466, -0.001388888888726807, 2.480158520348028e-05,
        -2.7556367748600105e-07, 2.0700442728449626e-09,
    ),
}


def _pi_scaled(bits: int) -> int:
    """floor(π·2^bits) (to a unit or two): Machin, π = 16·atan(1/5) − 4·atan(1/239)."""
    guard = 64
    one = 1 << (bits + guard)

    def atan_inverse(n):  # atan(1/n)·one = Σ (−1)^k / ((2k + 1)·n^(2k+1))
        total, power, k = 0, one // n, 0
        while power:
            total += (-1) ** k * (power // (2 * k + 1))
            power //= n * n
            k += 1
        return total

    return (16 * atan_inverse(5) - 4 * atan_inverse(239)) >> guard


_PI = _pi_scaled(1400)
PIO2_HI = float(Fraction(_PI, 1 << 1401))
PIO2_LO = float(Fraction(_PI, 1 << 1401) - Fraction(PIO2_HI))
QUARTER_PI = float(Fraction(_PI, 1 << 1402))

#: Per precision: mantissa bits of M, 64-bit words of the window (L = 64·words bits),
#: exponent range of x = M·2^e once |x| ≥ π/4 (inf/NaN, e above, are masked at the end).
_REDUCTION = {"double": (53, 3, -53, 971), "single": (24, 2, -24, 104)}
_MASK32 = 0xFFFFFFFF


def _windows(words: int, e_min: int, e_max: int) -> list[int]:
    """W(e) = floor(2^(e + L − 2)·2/π) mod 2^L for each e, as `words` 64-bit words each.

    x·2/π ≡ M·W(e)/2^(L−2) (mod 4): the bits of 2/π before bit e − 1 only add multiples
    of 4, those after the window less than M·2^(2−L).
    """
    bits = 64 * words
    scale = e_max + bits + 64
    two_over_pi = (1 << (scale + 1 + 1400)) // _PI  # floor(2^scale · 2/π) (±1)
    table = []
    for e in range(e_min, e_max + 1):
        window = (two_over_pi >> (scale - (e + bits - 2))) & ((1 << bits) - 1)
        table += [(window >> (64 * (words - 1 - c))) & (2**64 - 1) for c in range(words)]
    return [w - 2**64 if w >= 2**63 else w for w in table]  # as signed i64 constants


@functools.cache
def _table_initializer(words: int, e_min: int, e_max: int) -> ir.FormattedConstant:
    """The table of windows as an IR constant, formatted once per process (a thousand
    i64 constants take milliseconds to build and print)."""
    values = _windows(words, e_min, e_max)
    array = ir.Constant(ir.ArrayType(I64, len(values)), values)
    return ir.FormattedConstant(array.type, array.get_reference())


def _window(m, e, precision):
    """The 32-bit limbs of W(e), most significant first: `words` gathers from a table."""
    _, words, e_min, e_max = _REDUCTION[precision]
    b = m.builder
    name = f"fg_two_over_pi_{precision}"
    table = b.module.globals.get(name)
    if table is None:
        initializer = _table_initializer(words, e_min, e_max)
        table = ir.GlobalVariable(b.module, initializer.type, name)
        table.linkage = "internal"
        table.global_constant = True
        table.initializer = initializer
    first = m.imul(m.isub(e, e_min), words)
    limbs = []
    for c in range(words):
        pointer = b.gep(table, [ir.Constant(I64, 0), m.iadd(first, c)], inbounds=True)
        word = b.load(pointer, typ=I64)
        limbs += [m.lshr(word, 32), m.and_(word, _MASK32)]
    return limbs


def _product_digits(m, mantissa_limbs, window):
    """Digits (32 bits, least significant first) of M·window mod 2^(32·len(window)).

    `mantissa_limbs` are (value, bits) pairs, least significant first, `window` the 32-bit
    limbs, most significant first. A product of a narrow limb (≤ 24 bits) joins its column
    whole, its high bits travel with the carry; a 32 × 32-bit product is split in two.
    """
    n = len(window)
    columns = [[] for _ in range(n + 1)]
    for i, (limb, width) in enumerate(mantissa_limbs):
        for k, window_limb in enumerate(window):
            column = n - 1 - k + i
            if column >= n:
                continue
            product = m.imul(limb, window_limb)
            if width <= 24:
                columns[column].append(product)
            else:
                columns[column].append(m.and_(product, _MASK32))
                columns[column + 1].append(m.lshr(product, 32))
    digits, carry = [], m.int(0)
    for column in columns[:n]:
        total = carry
        for part in column:
            total = m.iadd(total, part)
        digits.append(m.and_(total, _MASK32))
        carry = m.lshr(total, 32)
    return digits


def _digit_to_double(m, digit, scale):
    """digit·scale exactly, 0 ≤ digit < 2^52."""
    value = m.sub(m.double(m.or_(digit, 0x4330000000000000)), 2.0**52)
    return m.mul(value, scale)


def _reduce(m, ax, precision):
    """ax = (q + f)·π/2: returns q mod 4 (i64) and r = f·π/2 as (r_hi, r_lo | None)."""
    mantissa_bits, _, e_min, e_max = _REDUCTION[precision]
    bits = m.bits(ax)
    mantissa = m.or_(m.and_(bits, (1 << 52) - 1), 1 << 52)
    e = m.isub(m.lshr(bits, 52), 1075)
    if mantissa_bits < 53:  # a widened float: drop the zero low bits
        mantissa = m.lshr(mantissa, 53 - mantissa_bits)
        e = m.iadd(e, 53 - mantissa_bits)
    e = m.select(m.icmp("<", e, e_min), m.int(e_min), e)
    e = m.select(m.icmp(">", e, e_max), m.int(e_max), e)
    if mantissa_bits > 32:
        mantissa_limbs = [(m.and_(mantissa, _MASK32), 32), (m.lshr(mantissa, 32), 21)]
    else:
        mantissa_limbs = [(mantissa, mantissa_bits)]
    digits = _product_digits(m, mantissa_limbs, _window(m, e, precision))

    # the top digit holds 2 bits of q and 30 of f; round q to nearest, f to [−1/2, 1/2)
    top = digits[-1]
    q = m.and_(m.lshr(m.iadd(top, 1 << 29), 30), 3)
    f_top = m.small_int_to_double(m.ashr(m.shl(top, 34), 32))
    f_next = _digit_to_double(m, digits[-2], 2.0**-62)
    f_hi, f_lo = m.fast_two_sum(m.mul(f_top, 2.0**-32), f_next)
    f_lo = m.add(f_lo, _digit_to_double(m, digits[-3], 2.0**-94))
    if precision == "single":
        return q, m.mul(m.add(f_hi, f_lo), PIO2_HI), None
    f_lo = m.add(f_lo, _digit_to_double(m, digits[-4], 2.0**-126))
    f_hi, f_lo = m.fast_two_sum(f_hi, f_lo)
    r_hi, r_lo = m.two_prod(f_hi, PIO2_HI)
    r_lo = m.add(r_lo, m.madd(f_hi, PIO2_LO, m.mul(f_lo, PIO2_HI)))
    r_hi, r_lo = m.fast_two_sum(r_hi, r_lo)
    return q, r_hi, r_lo


def _sin_cos_of_reduced(m, r_hi, r_lo, precision):
    """(sin r, cos r) for r = r_hi + r_lo, |r| ≤ π/4."""
    z = m.mul(r_hi, r_hi)
    sin_tail = m.mul(m.mul(z, r_hi), m.horner(z, SIN_S[precision]))
    # cos r = w + ((1 − w) − z/2) + z²·C(z), w = 1 − z/2: the rounding of w is kept
    half_z = m.mul(0.5, z)
    w = m.sub(1.0, half_z)
    cos_tail = m.mul(m.mul(z, z), m.horner(z, COS_C[precision]))
    if r_lo is not None:  # sin(r + δ) ≈ sin r + δ·(1 − r²/2);  cos(r + δ) ≈ cos r − δ·r
        sin_tail = m.madd(r_lo, m.sub(1.0, half_z), sin_tail)
        z_error = m.fma(r_hi, r_hi, m.neg(z))  # z + z_error = r_hi² exactly
        cos_tail = m.sub(cos_tail, m.madd(r_hi, r_lo, m.mul(0.5, z_error)))
    sin_r = m.add(r_hi, sin_tail)
    cos_r = m.add(w, m.add(m.sub(m.sub(1.0, w), half_z), cos_tail))
    return sin_r, cos_r


def _sin_or_cos(m, x, precision, is_cos):
    ax = m.abs(x)
    q, r_hi, r_lo = _reduce(m, ax, precision)
    small = m.cmp("<", ax, QUARTER_PI)  # no reduction: q = 0, r = |x| (subnormals too)
    q = m.select(small, m.int(0), q)
    r_hi = m.select(small, ax, r_hi)
    if r_lo is not None:
        r_lo = m.select(small, 0.0, r_lo)
    sin_r, cos_r = _sin_cos_of_reduced(m, r_hi, r_lo, precision)
    odd = m.icmp("!=", m.and_(q, 1), 0)
    if is_cos:  # cos(|x|): cos r, −sin r, −cos r, sin r for q = 0, 1, 2, 3
        value = m.select(odd, sin_r, cos_r)
        sign = m.shl(m.and_(m.iadd(q, 1), 2), 62)
    else:  # sin: sin r, cos r, −sin r, −cos r; sin(−x) = −sin x
        value = m.select(odd, cos_r, sin_r)
        sign = m.xor(m.shl(m.and_(q, 2), 62), m.and_(m.bits(x), -(1 << 63)))
    value = m.double(m.xor(m.bits(value), sign))
    return m.select(m.cmp("<", ax, float("inf")), value, float("nan"))  # ±inf, NaN → NaN


def sin_kernel(m, x, precision):
    return _sin_or_cos(m, x, precision, is_cos=False)


def cos_kernel(m, x, precision):
    return _sin_or_cos(m, x, precision, is_cos=True)
