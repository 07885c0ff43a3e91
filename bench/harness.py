"""Measuring: first calls, correctness checks, then interleaved timing rounds.

For each workload:

1. first call: every implementation is created fresh and its first call timed on
   the workload's smallest case (fusegrad with its process-wide kernel cache
   cleared, so the time is trace + compile + one run);
2. per case: the first call's result is checked against NumPy (value rtol 1e-9,
   gradient rtol 1e-7) and a wrong implementation is not timed; then warm-up calls
   (two at least, for half a second), whose fastest sets the batch size;
3. rounds: each round calls every implementation `reps` times in a row (enough to
   last ≥ `inner_target_s` at the fastest warm-up speed, one call for big cases),
   rotating the order between rounds; the per-call median over rounds is reported,
   with NumPy / implementation as the speedup. A pause after every batch lets the previous library's BLAS threads,
   which spin for ~0.1 s after a call, go idle before the next implementation runs; an
   untimed call before every batch wakes the next implementation's own threads.
"""

from __future__ import annotations

import gc
import itertools
import math
import time
import zlib
from dataclasses import dataclass, field

import numpy as np

import fusegrad as fg
import fusegrad.runtime.kernel as fusegrad_kernels

import workloads as wl

VALUE_RTOL = 1e-9
GRAD_RTOL = 1e-7


@dataclass
class Settings:
    inner_target_s: float = 0.02  # each timed batch of calls lasts at least this long
    case_budget_s: float = 10.0  # timing rounds per case stop near this
    min_rounds: int = 3
    max_rounds: int = 41
    # Pause after each timed batch: OpenBLAS threads spin for ~0.1 s after a call, and NumPy
    # and fusegrad load two OpenBLAS copies; without it one library's spinning threads
    # would slow the next implementation down on a 2-core machine.
    settle_s: float = 0.12
    # Warm-up calls last at least this long: torch.compile's background compile workers keep
    # the cores busy for a while after a (re)compilation.
    warmup_s: float = 0.5
    frameworks: tuple = ("JAX", "PyTorch")
    torch_compile: bool = True


@dataclass
class Timing:
    name: str
    note: str = ""
    status: str = "ok"  # ok | wrong | error
    message: str = ""
    value_error: float = math.nan  # |v − v_numpy| / |v_numpy|
    grad_error: float = math.nan  # max over gradients of max|g − g_numpy| / max|g_numpy|
    reps: int = 0
    samples: list = field(default_factory=list)  # seconds per call, one per round

    @property
    def median(self) -> float:
        return float(np.median(self.samples)) if self.samples else math.nan

    @property
    def spread(self) -> float:
        """Interquartile range over the median."""
        if len(self.samples) < 2:
            return math.nan
        q1, q3 = np.percentile(self.samples, [25, 75])
        return float((q3 - q1) / np.median(self.samples))


@dataclass
class CaseResult:
    case: wl.Case
    timings: list
    seconds: float = 0.0

    def timing(self, name: str) -> Timing | None:
        return next((t for t in self.timings if t.name.startswith(name)), None)


@dataclass
class WorkloadResult:
    workload: wl.Workload
    first_call_case: wl.Case
    first_calls: dict  # implementation name -> seconds, or an error message
    cases: list = field(default_factory=list)


# -- inputs and checks ---------------------------------------------------------------------
def case_inputs(workload: wl.Workload, case: wl.Case) -> tuple:
    seed = zlib.crc32(f"{workload.name} {case.label}".encode())
    return workload.make_inputs(np.random.default_rng(seed), **case.sizes)


def input_size(case: wl.Case) -> int:
    return math.prod(case.sizes.values())


def relative_errors(result, reference) -> tuple[float, float]:
    value, grads = result
    ref_value, ref_grads = reference
    value_error = abs(value - ref_value) / max(abs(ref_value), np.finfo(float).tiny)
    if len(grads) != len(ref_grads):
        return value_error, math.inf
    grad_error = 0.0
    for grad, ref in zip(grads, ref_grads):
        if np.shape(grad) != np.shape(ref):
            return value_error, math.inf
        scale = max(float(np.max(np.abs(ref))), np.finfo(float).tiny)
        grad_error = max(grad_error, float(np.max(np.abs(grad - ref))) / scale)
    return value_error, grad_error


def describe_error(exc: Exception) -> str:
    """The first line of an exception, short enough for a table cell."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


# -- first calls ---------------------------------------------------------------------------
def warm_up_process() -> float | str:
    """Compile one unrelated kernel, so LLVM set-up is not charged to the first workload.

    The seconds it took, or the error (the workloads then report theirs).
    """
    start = time.perf_counter()
    try:
        fg.compile_grad(lambda x: np.sum(x * x))(np.ones(3))
    except Exception as exc:  # noqa: BLE001
        return describe_error(exc)
    return time.perf_counter() - start


def create_implementations(workload: wl.Workload, settings: Settings) -> list:
    fusegrad_kernels._kernels.clear()  # first call = trace + compile, not a cache hit
    impls = [wl.numpy_implementation(workload), wl.fusegrad_implementation(workload)]
    if "JAX" in settings.frameworks:
        impls.append(wl.jax_implementation(workload))
    if "PyTorch" in settings.frameworks:
        impls.append(wl.torch_implementation(workload, compile=settings.torch_compile))
    return [impl for impl in impls if impl is not None]


def time_first_call(impl: wl.Implementation, arrays) -> float:
    bound = impl.bind(arrays)
    start = time.perf_counter()
    bound()
    return time.perf_counter() - start


def measure_first_calls(workload: wl.Workload, cases: list, settings: Settings):
    """Fresh implementations, their first calls timed on the smallest case.

    A torch.compile that fails is replaced by eager PyTorch, with the failure noted.
    """
    case = min(cases, key=input_size)
    arrays = case_inputs(workload, case)
    impls = create_implementations(workload, settings)
    first_calls = {}
    for index, impl in enumerate(impls):
        time.sleep(settings.settle_s)
        try:
            first_calls[impl.name] = time_first_call(impl, arrays)
        except Exception as exc:  # noqa: BLE001 - reported, the others still run
            first_calls[impl.name] = describe_error(exc)
            if impl.name == "PyTorch":
                eager = wl.torch_implementation(workload, compile=False)
                eager.note += f" (torch.compile failed: {first_calls[impl.name]})"
                impls[index] = eager
                try:
                    first_calls[eager.name] = time_first_call(eager, arrays)
                except Exception as eager_exc:  # noqa: BLE001
                    first_calls[eager.name] = describe_error(eager_exc)
    return impls, WorkloadResult(workload, case, first_calls)


def select_cases(workload: wl.Workload, quick: bool) -> list:
    return workload.quick_cases if quick and workload.quick_cases else workload.cases


# -- one case ------------------------------------------------------------------------------
def warm_up(call, seconds: float) -> float:
    """Call for `seconds` (twice at least); the fastest call's time.

    The fastest call sets the batch size: a slow mode (a late recompilation, a thread that
    other processes keep off a core) must not shrink batches to a single call.
    """
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < 2 or time.perf_counter() < deadline:
        times.append(time_batch(call, 1))
    return min(times)


def time_batch(call, reps: int) -> float:
    start = time.perf_counter()
    for _ in itertools.repeat(None, reps):
        call()
    return (time.perf_counter() - start) / reps


def run_case(workload: wl.Workload, case: wl.Case, impls: list, settings: Settings) -> CaseResult:
    started = time.perf_counter()
    arrays = case_inputs(workload, case)
    reference = impls[0].as_numpy(impls[0].bind(arrays)())  # impls[0] is NumPy
    timings, calls, per_call = [], [], []
    for impl in impls:
        timing = Timing(impl.name, impl.note)
        timings.append(timing)
        try:
            call = impl.bind(arrays)
            result = impl.as_numpy(call())
        except Exception as exc:  # noqa: BLE001 - reported in the table
            timing.status, timing.message = "error", describe_error(exc)
            continue
        timing.value_error, timing.grad_error = relative_errors(result, reference)
        if timing.value_error > VALUE_RTOL or timing.grad_error > GRAD_RTOL:
            timing.status = "wrong"
            timing.message = (
                f"value rel. error {timing.value_error:.1e} (tol {VALUE_RTOL:g}), "
                f"gradient rel. error {timing.grad_error:.1e} (tol {GRAD_RTOL:g})"
            )
            continue
        fastest = warm_up(call, settings.warmup_s)
        timing.reps = max(1, math.ceil(settings.inner_target_s / fastest))
        calls.append((timing, call))
        per_call.append((timing.reps + 1) * fastest + settings.settle_s)

    rounds = int(settings.case_budget_s / max(sum(per_call), 1e-9))
    rounds = min(max(rounds, settings.min_rounds), settings.max_rounds)
    deadline = time.perf_counter() + 2 * settings.case_budget_s
    gc.collect()
    gc.disable()
    try:
        for round_index in range(rounds):
            shift = round_index % max(len(calls), 1)
            for timing, call in calls[shift:] + calls[:shift]:
                call()  # untimed: wakes the library's threads after the pause
                timing.samples.append(time_batch(call, timing.reps))
                time.sleep(settings.settle_s)
            if round_index + 1 >= settings.min_rounds and time.perf_counter() > deadline:
                break
    finally:
        gc.enable()
    del arrays, calls
    gc.collect()
    return CaseResult(case, timings, time.perf_counter() - started)


def run_workload(workload: wl.Workload, settings: Settings, quick: bool = False, log=print):
    cases = select_cases(workload, quick)
    impls, result = measure_first_calls(workload, cases, settings)
    for name, seconds in result.first_calls.items():
        shown = f"{seconds * 1e3:.1f} ms" if isinstance(seconds, float) else seconds
        log(f"  {workload.name} first call {name}: {shown}")
    for case in cases:
        case_result = run_case(workload, case, impls, settings)
        result.cases.append(case_result)
        log(f"  {workload.name} {case.label}: {summary_line(case_result)}")
    return result


def summary_line(result: CaseResult) -> str:
    parts = []
    for timing in result.timings:
        if timing.status != "ok":
            parts.append(f"{timing.name} {timing.status.upper()}")
        else:
            parts.append(f"{timing.name} {format_seconds(timing.median)}")
    return ", ".join(parts) + f" ({result.seconds:.1f} s)"


def format_seconds(seconds: float) -> str:
    if math.isnan(seconds):
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} µs" if seconds < 1e-5 else f"{seconds * 1e6:.1f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"
