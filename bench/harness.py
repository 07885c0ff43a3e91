"""Measuring: first calls, correctness checks, then interleaved timing rounds.

For each workload:

1. first call: every implementation is created fresh and its first call timed on
   the workload's smallest case (fusegrad with its process-wide kernel cache
   cleared, so the time is trace + compile + one run);
2. per case: the first call's result is checked against NumPy, output by output with
   the tolerances of the workload's kind (value 1e-9, gradient and Hessian 1e-7, Newton
   coefficients 1e-6), and a wrong implementation is not timed; then warm-up calls
   (two at least, for half a second), whose fastest sets the batch size;
3. rounds: each round calls every implementation `reps` times in a row (enough to
   last ≥ `inner_target_s` at the fastest warm-up speed, one call for big cases),
   rotating the order between rounds; the per-call median over rounds is reported,
   with NumPy / implementation as the speedup. A pause after every batch lets the previous library's BLAS threads,
   which spin for ~0.1 s after a call, go idle before the next implementation runs; an
   untimed call before every batch wakes the next implementation's own threads.

The first calls of step 1 run with the on-disk kernel cache off (`run.py` sets
FUSEGRAD_CACHE=0). `ProcessFirstCalls` measures fusegrad's first call in fresh processes
instead, each after `import fusegrad` and the runtime's set-up (LLVM, BLAS, timed on its
own): *cold* with an empty cache folder (trace + compile + store + one run), then *warm*
with the folder the cold process filled (trace + load + one run).
"""

from __future__ import annotations

import gc
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field

import implementations as impl
import numpy as np
import workloads as wl
from fusegrad.runtime import kernel as fusegrad_kernels

import fusegrad as fg


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
    frameworks: tuple = tuple(impl.available_frameworks())  # optional frameworks to run
    torch_compile: bool = True


@dataclass
class Timing:
    name: str
    note: str = ""
    status: str = "ok"  # ok | wrong | error
    message: str = ""
    errors: tuple = ()  # per output of the kind: max|r − r_numpy| / max|r_numpy|
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
    # fusegrad's first call in fresh processes: {"cold": ..., "warm": ...}, each the dict of
    # `fresh_process_first_call` or an error message; empty when not measured
    process_first_calls: dict = field(default_factory=dict)


# -- inputs and checks ---------------------------------------------------------------------
def case_inputs(workload: wl.Workload, case: wl.Case) -> tuple:
    seed = zlib.crc32(f"{workload.name} {case.label}".encode())
    return workload.make_inputs(np.random.default_rng(seed), **case.sizes)


def input_size(case: wl.Case) -> int:
    return math.prod(case.sizes.values())


def arrays_of(output) -> list:
    """An output's arrays: itself, or those of a tuple (one gradient per argument)."""
    if isinstance(output, tuple):
        return [array for part in output for array in arrays_of(part)]
    return [np.asarray(output)]


def relative_error(output, reference) -> float:
    """max|r − r_ref| / max|r_ref| over the output's arrays; inf when their shapes differ."""
    arrays, references = arrays_of(output), arrays_of(reference)
    if [a.shape for a in arrays] != [r.shape for r in references]:
        return math.inf
    error = 0.0
    for array, ref in zip(arrays, references):
        scale = max(float(np.max(np.abs(ref), initial=0.0)), np.finfo(float).tiny)
        error = max(error, float(np.max(np.abs(array - ref), initial=0.0)) / scale)
    return error


def relative_errors(kind: impl.Kind, result, reference) -> tuple:
    """One relative error per output of the kind (a one-output kind's result is that output)."""
    if len(kind.outputs) == 1:
        result, reference = (result,), (reference,)
    if len(result) != len(reference):
        return (math.inf,) * len(kind.outputs)
    return tuple(relative_error(r, ref) for r, ref in zip(result, reference))


def check_message(kind: impl.Kind, errors: tuple) -> str:
    return ", ".join(
        f"{output.name} rel. error {error:.1e} (tol {output.rtol:g})"
        for output, error in zip(kind.outputs, errors)
    )


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


def create_implementations(workload: wl.Workload, settings: Settings):
    """Fresh implementations of the workload, NumPy's first; optional frameworks that are
    not installed or not chosen are left out. A generator: each is created when the
    caller asks for it, so that one's set-up does not run during another's first call
    (creating a torch.compile implementation starts Inductor's compile workers, which
    took the other core for seconds: fusegrad's W1 first call measured 358–386 ms with
    them starting, 96–117 ms without)."""
    fusegrad_kernels._kernels.clear()  # first call = trace + compile, not a cache hit
    optional = impl.available_frameworks()
    for framework, factory in workload.implementations.items():
        if framework in optional and framework not in settings.frameworks:
            continue
        implementation = factory(workload)
        if implementation is None:
            continue
        if implementation.eager is not None and not settings.torch_compile:
            implementation = implementation.eager()
        yield implementation


def time_first_call(implementation: impl.Implementation, arrays) -> float:
    bound = implementation.bind(arrays)
    start = time.perf_counter()
    bound()
    return time.perf_counter() - start


def measure_first_calls(workload: wl.Workload, cases: list, settings: Settings):
    """Fresh implementations, their first calls timed on the smallest case.

    A compiled implementation that fails (torch.compile) is replaced by its eager one, with
    the failure noted.
    """
    case = min(cases, key=input_size)
    arrays = case_inputs(workload, case)
    impls = []
    first_calls = {}
    for index, implementation in enumerate(create_implementations(workload, settings)):
        impls.append(implementation)
        time.sleep(settings.settle_s)
        try:
            first_calls[implementation.name] = time_first_call(implementation, arrays)
        except Exception as exc:  # noqa: BLE001 - reported, the others still run
            first_calls[implementation.name] = describe_error(exc)
            if implementation.eager is not None:
                eager = implementation.eager()
                eager.note += (
                    f" (the compiled one failed: {first_calls[implementation.name]})"
                )
                impls[index] = eager
                try:
                    first_calls[eager.name] = time_first_call(eager, arrays)
                except Exception as eager_exc:  # noqa: BLE001
                    first_calls[eager.name] = describe_error(eager_exc)
    return impls, WorkloadResult(workload, case, first_calls)


# -- first calls in fresh processes (the on-disk kernel cache) -----------------------------
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


class ProcessFirstCalls:
    """Fresh `python` processes sharing one bytecode folder (so that compiling the sources of
    fusegrad is charged to none) and, per workload, one kernel cache folder."""

    def __init__(self):
        self._folder = tempfile.TemporaryDirectory(prefix="fusegrad-bench-")
        self.env = dict(
            os.environ, PYTHONPYCACHEPREFIX=os.path.join(self._folder.name, "pyc")
        )
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["FUSEGRAD_BENCH_FUSEGRAD_ONLY"] = "1"  # no other framework imported there
        # Writes the bytecode of fusegrad, NumPy and the workloads before anything is timed.
        self.run({"FUSEGRAD_CACHE": "0"}, "W2", None)

    def run(self, env: dict, workload: str, case: str | None) -> dict | str:
        """The measurement of `fresh_process_first_call` in a new process, or its error."""
        code = f"import sys; sys.path.insert(0, {BENCH_DIR!r}); import harness; "
        code += f"harness.fresh_process_first_call({workload!r}, {case!r})"
        try:
            completed = subprocess.run(
                [sys.executable, "-c", code],
                env={**self.env, **env},
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return "timed out after 300 s"
        if completed.returncode != 0:
            return (completed.stderr.strip().splitlines() or ["exit status"])[-1][:200]
        return json.loads(completed.stdout.strip().splitlines()[-1])

    def measure(self, workload: wl.Workload, case: wl.Case) -> dict:
        """`{"cold": ..., "warm": ...}` on an empty, then the filled, cache folder."""
        kernels = tempfile.mkdtemp(prefix="kernels-", dir=self._folder.name)
        env = {"FUSEGRAD_CACHE": "1", "FUSEGRAD_CACHE_DIR": kernels}
        cold = self.run(env, workload.name, case.label)
        warm = self.run(env, workload.name, case.label)
        return {"cold": cold, "warm": warm}

    def close(self):
        self._folder.cleanup()


def fresh_process_first_call(name: str, label: str | None):
    """Run in a fresh process: print, as JSON, the runtime's set-up time, then the first
    call's time and how it divides (tracing, building the kernel, the rest: the call)."""
    from fusegrad.runtime import blas, cache, jit

    from fusegrad import api

    workload = next(w for w in wl.WORKLOADS if w.name == name)
    cases = workload.cases + workload.quick_cases
    case = next((c for c in cases if c.label == label), min(cases, key=input_size))
    arrays = case_inputs(workload, case)
    start = time.perf_counter()
    jit._initialize()  # LLVM's target and the runtime's symbols: once per process
    blas.available()
    setup_s = time.perf_counter() - start

    spent = {"trace_s": 0.0, "kernel_s": 0.0}

    def timed(key, function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - started

        return wrapper

    api.CompiledFunction.trace = timed("trace_s", api.CompiledFunction.trace)
    fusegrad_kernels.build_kernel = timed("kernel_s", fusegrad_kernels.build_kernel)
    call = workload.implementations["fusegrad"](workload).bind(arrays)
    start = time.perf_counter()
    call()
    first_call_s = time.perf_counter() - start
    from fusegrad import derivative_cache

    derivatives = {f"derivative_{k}": v for k, v in derivative_cache.stats.items()}
    result = {"setup_s": setup_s, "first_call_s": first_call_s, **spent, **cache.stats, **derivatives}
    print(json.dumps(result))


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


def run_case(
    workload: wl.Workload, case: wl.Case, impls: list, settings: Settings
) -> CaseResult:
    started = time.perf_counter()
    arrays = case_inputs(workload, case)
    reference = impls[0].as_numpy(impls[0].bind(arrays)())  # impls[0] is NumPy
    kind = workload.kind
    timings, calls, per_call = [], [], []
    for implementation in impls:
        timing = Timing(implementation.name, implementation.note)
        timings.append(timing)
        try:
            call = implementation.bind(arrays)
            result = implementation.as_numpy(call())
        except Exception as exc:  # noqa: BLE001 - reported in the table
            timing.status, timing.message = "error", describe_error(exc)
            continue
        timing.errors = relative_errors(kind, result, reference)
        tolerances = [output.rtol for output in kind.outputs]
        if not all(error <= rtol for error, rtol in zip(timing.errors, tolerances)):
            timing.status = "wrong"
            timing.message = check_message(kind, timing.errors)
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
            if (
                round_index + 1 >= settings.min_rounds
                and time.perf_counter() > deadline
            ):
                break
    finally:
        gc.enable()
    del arrays, calls
    gc.collect()
    return CaseResult(case, timings, time.perf_counter() - started)


def run_workload(
    workload: wl.Workload,
    settings: Settings,
    quick: bool = False,
    log=print,
    processes=None,
):
    """`processes`, a `ProcessFirstCalls`, adds the cold and warm first calls."""
    cases = select_cases(workload, quick)
    impls, result = measure_first_calls(workload, cases, settings)
    for name, seconds in result.first_calls.items():
        shown = f"{seconds * 1e3:.1f} ms" if isinstance(seconds, float) else seconds
        log(f"  {workload.name} first call {name}: {shown}")
    if processes is not None:
        result.process_first_calls = processes.measure(workload, result.first_call_case)
        for name, measured in result.process_first_calls.items():
            shown = format_first_call(measured)
            log(
                f"  {workload.name} first call fusegrad, fresh process, {name} cache: {shown}"
            )
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


def format_first_call(measured) -> str:
    """A fresh process's first call, e.g. `4.1 ms (trace 1.2 ms, kernel 2.0 ms)`."""
    if not isinstance(measured, dict):
        return f"error: {measured}"
    parts = f"trace {format_seconds(measured['trace_s'])}, kernel {format_seconds(measured['kernel_s'])}"
    return f"{format_seconds(measured['first_call_s'])} ({parts})"


def format_seconds(seconds: float) -> str:
    if math.isnan(seconds):
        return "—"
    if seconds < 1e-3:
        return (
            f"{seconds * 1e6:.2f} µs" if seconds < 1e-5 else f"{seconds * 1e6:.1f} µs"
        )
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"
