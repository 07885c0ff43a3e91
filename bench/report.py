"""The machine description and the Markdown report (`bench/RESULTS.md`)."""

from __future__ import annotations

import datetime
import math
import os
import platform
import subprocess
from pathlib import Path

import llvmlite
import llvmlite.binding
import numpy as np
from harness import format_first_call, format_seconds

import fusegrad as fg

FUSEGRAD_DIR = Path(fg.__file__).resolve().parent
THREAD_VARIABLES = [
    "FUSEGRAD_NUM_THREADS",
    "FUSEGRAD_BLAS",
    "FUSEGRAD_GRAM_TILES",
    "FUSEGRAD_COMPILE_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
]


# -- machine -------------------------------------------------------------------------------
def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _field(text: str, key: str) -> str | None:
    for line in text.splitlines():
        name, _, value = line.partition(":") if ":" in line else line.partition("=")
        if name.strip() == key:
            return value.strip().strip('"')
    return None


def _numpy_blas() -> str:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - older NumPy
        return "unknown"


def _git(*args: str) -> str:
    command = ["git", "-C", str(FUSEGRAD_DIR), *args]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=10, check=False
    )
    return result.stdout.strip()


def _git_revision() -> str:
    try:
        revision = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not revision:
        return "unknown"
    return revision + (" + uncommitted changes" if dirty else "")


def _cpu(cpuinfo: str) -> str:
    model = _field(cpuinfo, "model name") or platform.processor() or "unknown"
    flags = set((_field(cpuinfo, "flags") or "").split())
    vector = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f") if f in flags]
    megahertz = _field(cpuinfo, "cpu MHz")
    clock = f", {float(megahertz):.0f} MHz" if megahertz else ""
    return f"{model}{clock}" + (f" ({', '.join(vector)})" if vector else "")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine while it ran."""
    return " / ".join(f"{load:.2f}" for load in os.getloadavg())


def machine(frameworks: dict) -> list[tuple[str, str]]:
    cpuinfo = _read("/proc/cpuinfo")
    memory_kb = _field(_read("/proc/meminfo"), "MemTotal")
    memory = f"{int(memory_kb.split()[0]) / 2**20:.1f} GiB" if memory_kb else "unknown"
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    os_name = _field(_read("/etc/os-release"), "PRETTY_NAME") or platform.system()
    llvm = ".".join(map(str, llvmlite.binding.llvm_version_info))
    rows = [
        ("CPU", _cpu(cpuinfo)),
        ("Cores", f"{cores} logical, {usable} usable by this process"),
        ("Memory", memory),
        ("OS", f"{os_name} (Linux {platform.release()}, {platform.machine()})"),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("NumPy", f"{np.__version__} (BLAS: {_numpy_blas()})"),
        ("llvmlite", f"{llvmlite.__version__} (LLVM {llvm})"),
        ("fusegrad", f"{fg.__version__} ({FUSEGRAD_DIR}, git {_git_revision()})"),
    ]
    for name, version in frameworks.items():
        rows.append((name, version or "not installed (not run)"))
    set_variables = [
        f"{v}={os.environ[v]}" for v in THREAD_VARIABLES if v in os.environ
    ]
    rows.append(("Environment", ", ".join(set_variables) or "no thread variables set"))
    return rows


# -- report --------------------------------------------------------------------------------
def speedup(timing, numpy_timing) -> str:
    if (
        timing is None
        or numpy_timing is None
        or not timing.samples
        or not numpy_timing.samples
    ):
        return "—"
    return f"{numpy_timing.median / timing.median:.2f}×"


def target_status(case_result, target) -> tuple[str, str]:
    """(measured, status) of one of a case's targets, from the fusegrad and baseline timings."""
    fusegrad = case_result.timing("fusegrad")
    if fusegrad is None or not fusegrad.samples:
        return "not measured", "**missed** (no fusegrad timing)"
    if target.kind == "max_us":
        baseline_s = math.nan
        measured = format_seconds(fusegrad.median)
    else:
        baseline = case_result.timing(target.baseline)
        if baseline is None or not baseline.samples:
            return "not measured", f"not measured ({target.baseline} not timed)"
        baseline_s = baseline.median
        measured = target.measure(fusegrad.median, baseline_s)
    if target.is_met(fusegrad.median, baseline_s):
        return measured, "met"
    return measured, f"**missed**: {target.shortfall(fusegrad.median, baseline_s)}"


def first_call_status(seconds, limit_ms: float) -> tuple[str, str]:
    if not isinstance(seconds, float):
        return "failed", f"**missed**: {seconds}"
    milliseconds = seconds * 1e3
    measured = f"{milliseconds:.0f} ms"
    if milliseconds <= limit_ms:
        return measured, "met"
    return (
        measured,
        f"**missed**: {milliseconds / limit_ms:.1f}× over ≤ {limit_ms:g} ms",
    )


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def targets_table(results) -> list[str]:
    rows = []
    for result in results:
        for case_result in result.cases:
            for target in case_result.case.targets:
                measured, status = target_status(case_result, target)
                label = f"{result.workload.name} {case_result.case.label}"
                rows.append([label, target.describe(), measured, status])
        limit_ms = result.workload.first_call_ms
        measured, status = first_call_status(
            result.first_calls.get("fusegrad"), limit_ms
        )
        rows.append(
            [
                f"{result.workload.name} first call",
                f"≤ {limit_ms:g} ms",
                measured,
                status,
            ]
        )
    return _table(["Case", "Target", "fusegrad", "Status"], rows)


WARM_FIRST_CALL_TARGET_MS = 10.0


def process_first_calls_table(results) -> list[str]:
    """fusegrad's first call in fresh processes, with an empty and a filled kernel cache."""
    rows = []
    for result in results:
        measured = result.process_first_calls
        if not measured:
            continue
        warm, cold = measured.get("warm"), measured.get("cold")
        setup = format_seconds(cold["setup_s"]) if isinstance(cold, dict) else "—"
        status = "—"
        if isinstance(warm, dict):
            milliseconds = warm["first_call_s"] * 1e3
            status = (
                "met"
                if milliseconds <= WARM_FIRST_CALL_TARGET_MS
                else (
                    f"**missed**: {milliseconds / WARM_FIRST_CALL_TARGET_MS:.1f}× over"
                )
            )
            if not warm.get("hits"):
                status += " (no cache hit)"
        label = f"{result.workload.name} {result.first_call_case.label}"
        rows.append(
            [label, setup, format_first_call(cold), format_first_call(warm), status]
        )
    if not rows:
        return []
    header = [
        "Case",
        "Set-up",
        "Cold cache",
        "Warm cache",
        f"Warm ≤ {WARM_FIRST_CALL_TARGET_MS:g} ms",
    ]
    return [
        "## First call in a fresh process (on-disk kernel cache)",
        "",
        "fusegrad's first call in a new `python` process, after `import fusegrad` and the "
        + "runtime's set-up (LLVM target, runtime symbols, BLAS: the Set-up column, once per "
        + "process): with an empty cache folder (trace + compile + store + one run), then with "
        + "the folder that process filled (trace + load + one run). *kernel* is building the "
        + "kernel (compile or load, and its Python caller); the rest of the first call is "
        + "the run itself.",
        "",
        *_table(header, rows),
        "",
    ]


def check_cell(timing) -> str:
    if timing.name == "NumPy":
        return "reference"
    if timing.status == "error":
        return f"**error**: {timing.message}"
    errors = " / ".join(f"{error:.0e}" for error in timing.errors)
    if timing.status == "wrong":
        return f"**wrong** ({errors}), not timed"
    return f"ok ({errors})"


def workload_section(result) -> list[str]:
    workload = result.workload
    lines = [f"## {workload.name}: {workload.title}", "", f"`{workload.formula}`", ""]
    rows = []
    for case_result in result.cases:
        numpy = case_result.timing("NumPy")
        targets = case_result.case.targets
        described = "; ".join(target.describe() for target in targets)
        status = "; ".join(target_status(case_result, target)[1] for target in targets)
        for timing in case_result.timings:
            is_fusegrad = timing.name == "fusegrad"
            spread = "" if math.isnan(timing.spread) else f"±{timing.spread * 50:.0f}%"
            rows.append(
                [
                    case_result.case.label,
                    timing.name,
                    format_seconds(timing.median),
                    speedup(timing, numpy),
                    spread,
                    f"{len(timing.samples)} × {timing.reps}" if timing.samples else "—",
                    described if is_fusegrad else "",
                    status if is_fusegrad else "",
                    check_cell(timing),
                ]
            )
    header = [
        "Case",
        "Implementation",
        "Median / call",
        "vs NumPy",
        "Spread",
        "Rounds × calls",
        "Target",
        "Status",
        f"Check ({' / '.join(output.name for output in workload.kind.outputs)} rel. error)",
    ]
    lines += _table(header, rows)
    first = [
        f"{name} {format_seconds(s) if isinstance(s, float) else 'failed: ' + s}"
        for name, s in result.first_calls.items()
    ]
    lines += [
        "",
        f"First call on {result.first_call_case.label} (trace + compile + one run): "
        + ", ".join(first)
        + ".",
    ]
    notes = {t.name: t.note for c in result.cases for t in c.timings if t.note}
    lines += [f"{name}: {note}." for name, note in notes.items()]
    return lines + [""]


def render(
    results, machine_rows, command: str, seconds: float, quick: bool, setup_s, load: str
):
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    lines = [
        "# fusegrad benchmarks",
        "",
        f"Written by `{command}` on {now}; the run took {seconds:.0f} s.",
        "See `bench/README.md` for the workloads and how to read the tables.",
        "",
    ]
    if quick:
        lines += [
            "**Quick smoke run** (`--quick`): small sizes, 1–2 rounds; the numbers are not "
            + "measurements.",
            "",
        ]
    machine_rows = [
        *machine_rows,
        ("Load average", f"{load} at start, {load_average()} at end"),
    ]
    lines += ["## Machine", ""] + _table(["", ""], [list(row) for row in machine_rows])
    setup = (
        f"{setup_s * 1e3:.0f} ms"
        if isinstance(setup_s, float)
        else f"failed: {setup_s}"
    )
    lines += [
        "",
        "fusegrad process warm-up (LLVM initialisation and one trivial kernel, charged to no "
        + f"workload): {setup}.",
        "",
        "## Targets",
        "",
        "Speedup targets compare fusegrad with hand-written NumPy (or the library named) in the "
        + "same run; absolute targets are fusegrad's median time per call.",
        "",
    ]
    lines += targets_table(results) + [""]
    lines += process_first_calls_table(results)
    analysis = Path(__file__).resolve().parent / "ANALYSIS.md"
    if analysis.exists() and not quick:  # what bounds each target, and what was tried
        lines += [analysis.read_text().rstrip(), ""]
    for result in results:
        lines += workload_section(result)
    return "\n".join(lines)
