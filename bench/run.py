"""Run the benchmarks and write the report.

python bench/run.py                      # every workload, ~3 minutes on 2 cores
python bench/run.py --quick --output /tmp/x.md   # smoke run, small sizes, < 30 s
python bench/run.py --only W4,W5         # some workloads
python bench/run.py --without PyTorch    # skip an optional framework
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import harness
import implementations as impl
import report
import workloads as wl

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "RESULTS.md"


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: small sizes, 1-2 rounds"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated workloads, e.g. W1,W2"
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown report path"
    )
    parser.add_argument(
        "--without",
        default="",
        help="comma-separated optional frameworks to skip: "
        + ",".join(impl.available_frameworks()),
    )
    parser.add_argument(
        "--no-torch-compile",
        action="store_true",
        help="time eager PyTorch, not torch.compile",
    )
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds of timing rounds per case"
    )
    return parser.parse_args(argv)


def settings_for(args) -> harness.Settings:
    without = {name.strip().lower() for name in args.without.split(",") if name.strip()}
    frameworks = tuple(
        f for f in impl.available_frameworks() if f.lower() not in without
    )
    if args.quick:
        settings = harness.Settings(
            inner_target_s=0.005,
            case_budget_s=0.05,
            min_rounds=1,
            max_rounds=2,
            settle_s=0.0,
            warmup_s=0.0,
        )
    else:
        settings = harness.Settings()
    settings.frameworks = frameworks
    settings.torch_compile = not args.no_torch_compile
    if args.budget is not None:
        settings.case_budget_s = args.budget
    return settings


def select_workloads(only: str) -> list:
    names = [name.strip().upper() for name in only.split(",") if name.strip()]
    known = {w.name: w for w in wl.WORKLOADS}
    unknown = [name for name in names if name not in known]
    if unknown:
        sys.exit(
            f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(known)}"
        )
    return [known[name] for name in names] if names else wl.WORKLOADS


def main(argv=None):
    args = parse_arguments(argv if argv is not None else sys.argv[1:])
    settings = settings_for(args)
    chosen = select_workloads(args.only)
    started = time.perf_counter()
    load = report.load_average()
    frameworks = {
        name: version
        if version is None or name in settings.frameworks
        else f"{version}, skipped (--without)"
        for name, version in impl.available_frameworks().items()
    }
    print(
        "machine:",
        "; ".join(f"{k}: {v}" for k, v in report.machine(frameworks)),
        flush=True,
    )
    # In this process first calls compile: the on-disk kernel cache is for fresh processes.
    os.environ["FUSEGRAD_CACHE"] = "0"
    setup_s = harness.warm_up_process()
    processes = harness.ProcessFirstCalls()
    results = []
    try:
        for workload in chosen:
            print(f"{workload.name}: {workload.title}", flush=True)
            results.append(
                harness.run_workload(
                    workload,
                    settings,
                    quick=args.quick,
                    log=lambda line: print(line, flush=True),
                    processes=processes,
                )
            )
    finally:
        processes.close()
    seconds = time.perf_counter() - started
    command = "python bench/run.py" + "".join(
        " " + shlex.quote(a) for a in (argv or sys.argv[1:])
    )
    machine = report.machine(frameworks)
    text = report.render(results, machine, command, seconds, args.quick, setup_s, load)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")
    print()
    print(text)
    print(f"\nwrote {args.output} in {seconds:.0f} s")


if __name__ == "__main__":
    main()
