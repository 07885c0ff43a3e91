"""W1 / W2 / W6 on a GPU: fusegrad `target="cuda"` against PyTorch (eager, torch.compile)
and JAX on the same device, written to a Markdown file. `bench/gpu.sh` runs it.

python bench/gpu.py --output bench/RESULTS_GPU.md     # needs an NVIDIA GPU
python bench/gpu.py --dry-run                         # no GPU: emulated device, tiny sizes

Every framework gets its inputs already on the device and is timed to completion
(synchronized), value and gradient together. fusegrad's results are checked against
NumPy's closed form (bench/workloads.py) before anything is timed. W2 also reports the
bandwidth achieved, counting the bytes a fused pass must move (x read once, the gradient
written once) against the device's theoretical peak (memory clock × bus width × 2).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


@dataclass(frozen=True)
class GpuCase:
    workload: str  # W1, W2, W6 of bench/workloads.py
    sizes: dict
    dtype: str
    dry_sizes: dict  # the --dry-run sizes

    def label(self, dry: bool) -> str:
        sizes = self.dry_sizes if dry else self.sizes
        return f"{self.workload} " + ", ".join(f"{k}={v:,}" for k, v in sizes.items())


CASES = [
    GpuCase("W1", {"m": 1_000_000, "n": 32}, "float64", {"m": 1000, "n": 8}),
    GpuCase("W1", {"m": 1_000_000, "n": 32}, "float32", {"m": 1000, "n": 8}),
    GpuCase("W2", {"n": 100_000_000}, "float32", {"n": 10_000}),
    GpuCase("W6", {"rows": 4096, "cols": 1024}, "float64", {"rows": 64, "cols": 16}),
]


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS_GPU.md")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="no GPU: fusegrad on the CPU-emulated device (FUSEGRAD_CUDA_DEVICE=emulate), "
        "tiny sizes, frameworks on their CPU; checks the script, measures nothing",
    )
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per case")
    parser.add_argument("--without", default="", help="comma-separated: PyTorch,JAX")
    return parser.parse_args(argv)


# -- timing --------------------------------------------------------------------------------
def median_seconds(call, synchronize, repeats: int) -> float:
    """Median wall time of `call()` to completion, after two warm-up calls."""
    for _ in range(2):
        call()
        synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# -- frameworks ----------------------------------------------------------------------------
def fusegrad_runner(workload, arrays, dry: bool):
    """(call, synchronize, result): fusegrad target="cuda" on device-resident inputs."""
    import fusegrad as fg
    from fusegrad.runtime.cuda import launcher

    compiled = fg.compile_grad(workload.fusegrad_fn, wrt=workload.wrt, target="cuda")
    device = launcher.default_device()
    on_device = [launcher.to_device(a, device) for a in arrays]

    def call():
        return compiled(*on_device)

    value, grad = call()
    return call, device.synchronize, (float(np.asarray(value)), np.asarray(grad))


def torch_runners(workload, arrays, dry: bool):
    """{name: (call, synchronize)} for PyTorch eager and torch.compile, or {}."""
    try:
        import torch
    except ImportError:
        return {}
    if not dry and not torch.cuda.is_available():
        return {}
    device = "cpu" if dry else "cuda"
    tensors = [torch.as_tensor(a, device=device) for a in arrays]
    wrt = workload.wrt

    def value_and_grad(*args):
        args = list(args)
        args[wrt] = args[wrt].detach().requires_grad_(True)
        value = workload.torch_fn(*args)
        (grad,) = torch.autograd.grad(value, args[wrt])
        return value, grad

    def synchronize():
        if device == "cuda":
            torch.cuda.synchronize()

    runners = {"PyTorch eager": (lambda: value_and_grad(*tensors), synchronize)}
    try:
        from torch.func import grad_and_value

        compiled = torch.compile(grad_and_value(workload.torch_fn, argnums=wrt))
        compiled(*tensors)  # compile now, outside the timing
        runners["torch.compile"] = (lambda: compiled(*tensors), synchronize)
    except Exception as exc:  # noqa: BLE001 - report, keep going
        print(f"  torch.compile failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    return runners


def jax_runners(workload, arrays, dry: bool):
    try:
        import jax
    except ImportError:
        return {}
    jax.config.update("jax_enable_x64", True)
    try:
        device = jax.devices("cpu" if dry else "gpu")[0]
    except RuntimeError:
        return {}
    on_device = [jax.device_put(a, device) for a in arrays]
    step = jax.jit(jax.value_and_grad(workload.jax_fn, argnums=workload.wrt))
    jax.block_until_ready(step(*on_device))

    def call():
        return jax.block_until_ready(step(*on_device))

    return {"JAX jit": (call, lambda: None)}


# -- one case ------------------------------------------------------------------------------
def run_case(case: GpuCase, settings) -> list[dict]:
    import workloads as wl

    workload = {w.name: w for w in wl.WORKLOADS}[case.workload]
    sizes = case.dry_sizes if settings.dry_run else case.sizes
    arrays = [a.astype(case.dtype) for a in workload.make_inputs(np.random.default_rng(0), **sizes)]
    rows = []
    call, synchronize, (value, grad) = fusegrad_runner(workload, arrays, settings.dry_run)
    ref_value, (ref_grad,) = workload.numpy_closed_form(*[a.astype(np.float64) for a in arrays])
    tolerance = 1e-4 if case.dtype == "float32" else 1e-10
    error = max(
        abs(value - ref_value) / max(1.0, abs(ref_value)),
        float(np.max(np.abs(grad - ref_grad)) / max(1.0, np.max(np.abs(ref_grad)))),
    )
    if error > tolerance:
        raise SystemExit(f"{case.label(settings.dry_run)}: fusegrad's result is off by {error:.2e}")
    runners = {"fusegrad cuda": (call, synchronize)}
    if "PyTorch" not in settings.without:
        runners.update(torch_runners(workload, arrays, settings.dry_run))
    if "JAX" not in settings.without:
        runners.update(jax_runners(workload, arrays, settings.dry_run))
    repeats = 1 if settings.dry_run else settings.repeats
    for name, (run, sync) in runners.items():
        seconds = median_seconds(run, sync, repeats)
        rows.append({"case": case, "framework": name, "seconds": seconds, "error": error})
        print(f"  {case.label(settings.dry_run)} {case.dtype}: {name} {seconds * 1e3:.3f} ms")
    return rows


def moved_bytes(case: GpuCase, sizes: dict) -> int:
    """W2's minimum traffic: x read once and the gradient written once."""
    itemsize = np.dtype(case.dtype).itemsize
    return 2 * sizes["n"] * itemsize


def device_description(dry: bool) -> tuple[str, float | None]:
    if dry:
        return "emulated device (dry run: nothing measured)", None
    from fusegrad.runtime.cuda import driver

    gpu = driver.get()
    return f"{gpu.name()} ({gpu.arch}, driver {gpu.version()})", gpu.peak_bandwidth()


def write_report(rows, settings, device: str, peak: float | None) -> None:
    lines = [
        "# fusegrad on a GPU",
        "",
        f"Device: {device}. Host: {platform.node()}, Python {platform.python_version()}.",
        f"Median of {1 if settings.dry_run else settings.repeats} synchronized calls, "
        "inputs already on the device, value + gradient.",
        "",
        "| case | dtype | framework | time (ms) | time / fusegrad's | note |",
        "|---|---|---|---:|---:|---|",
    ]
    by_case: dict = {}
    for row in rows:
        by_case.setdefault((row["case"].label(settings.dry_run), row["case"].dtype), []).append(row)
    for (label, dtype), case_rows in by_case.items():
        ours = next(r["seconds"] for r in case_rows if r["framework"] == "fusegrad cuda")
        for row in case_rows:
            note = ""
            case = row["case"]
            if case.workload == "W2" and row["framework"] == "fusegrad cuda":
                sizes = case.dry_sizes if settings.dry_run else case.sizes
                achieved = moved_bytes(case, sizes) / row["seconds"]
                note = f"{achieved / 1e9:.0f} GB/s"
                if peak:
                    note += f" = {100 * achieved / peak:.0f} % of {peak / 1e9:.0f} GB/s peak"
            if row["framework"] == "fusegrad cuda":
                note = (note + "; " if note else "") + f"max rel. error {row['error']:.1e}"
            lines.append(
                f"| {label} | {dtype} | {row['framework']} | {row['seconds'] * 1e3:.3f} | "
                f"{row['seconds'] / ours:.2f}× | {note} |"
            )
    settings.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {settings.output}")


def main(argv=None) -> int:
    settings = parse_arguments(argv)
    settings.without = {w.strip() for w in settings.without.split(",") if w.strip()}
    if settings.dry_run:
        os.environ["FUSEGRAD_CUDA_DEVICE"] = "emulate"
    device, peak = device_description(settings.dry_run)
    print(f"device: {device}")
    rows = []
    for case in CASES:
        rows += run_case(case, settings)
    write_report(rows, settings, device, peak)
    return 0


if __name__ == "__main__":
    sys.exit(main())
