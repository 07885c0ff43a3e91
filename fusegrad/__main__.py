"""The command line: `python -m fusegrad build MODULE.py -o OUTDIR`, `python -m fusegrad cache`.

    python -m fusegrad build model.py -o out [--name NAME]
        [--target-cpu native|x86-64-v3|x86-64] [--no-blas]
        [--target cpu|cuda] [--cuda-arch sm_80,sm_90]

builds every annotated compiled function of model.py into out/lib<NAME>.so,
out/lib<NAME>.a, out/<NAME>.h and out/<NAME>.pc (see fusegrad/aot/build.py); with
--target cuda, into CUDA C (out/<NAME>_<function>.cu), a host launcher with the kernels
embedded (out/<NAME>_cuda.c) and out/<NAME>.h (see fusegrad/aot/cuda.py).
A build that cannot go on prints one line that says what to do and exits with 2.

    python -m fusegrad cache [--clear]

prints where the on-disk kernel cache is (see runtime/cache.py), whether it is on, how
many entries it holds and their size against the limit; --clear removes every entry.
"""

from __future__ import annotations

import argparse
import sys

from .compiler.errors import FusegradError


def _parser() -> argparse.ArgumentParser:
    from .aot.codegen import TARGET_CPUS

    parser = argparse.ArgumentParser(prog="python -m fusegrad", description="fusegrad command line")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    build = commands.add_parser(
        "build",
        help="build a module's annotated compiled functions into a C library",
        description="Build every compiled function of MODULE.py whose parameters are "
        'annotated (w: fg.f64["n"]) into OUTDIR/lib<NAME>.so, lib<NAME>.a, <NAME>.h '
        "and <NAME>.pc.",
    )
    build.add_argument("module", metavar="MODULE.py", help="the Python module to build")
    build.add_argument("-o", "--outdir", required=True, metavar="OUTDIR", help="output folder")
    build.add_argument("--name", help="library name (default: the module's file name)")
    build.add_argument(
        "--target-cpu",
        default="native",
        choices=list(TARGET_CPUS),
        help="native: this machine's CPU (default); x86-64-v3: AVX2/FMA CPUs (Haswell and "
        "later); x86-64: any x86-64 CPU",
    )
    build.add_argument(
        "--no-blas",
        action="store_true",
        help="matrix products as generated loops: the library needs only libc, libm, pthreads",
    )
    build.add_argument(
        "--target",
        default="cpu",
        choices=["cpu", "cuda"],
        help="cpu: a native library (default); cuda: CUDA C, a host launcher and a header",
    )
    build.add_argument(
        "--cuda-arch",
        default="sm_80,sm_90",
        metavar="ARCHS",
        help="with --target cuda: the GPU archs to embed CUBINs for, comma-separated "
        "(default sm_80,sm_90; the PTX of the first is embedded too)",
    )
    cache = commands.add_parser(
        "cache",
        help="show (or clear) the on-disk kernel cache",
        description="Print the kernel cache's folder (FUSEGRAD_CACHE_DIR, else "
        "$XDG_CACHE_HOME/fusegrad), whether it is on, its entries and their size.",
    )
    cache.add_argument("--clear", action="store_true", help="remove every entry")
    return parser


def _cache_command(clear: bool) -> int:
    from .runtime import cache

    if clear:
        print(f"removed {cache.clear()} files from {cache.directory()}")
        return 0
    info = cache.summary()
    megabytes = info["bytes"] / 2**20
    limit = info["limit_bytes"] / 2**20
    print(f"folder:  {info['folder']}")
    print(f"state:   {info['state']}")
    print(f"entries: {info['entries']} ({megabytes:.1f} MB of {limit:.0f} MB)")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "cache":
        return _cache_command(args.clear)
    from .aot import build_library

    try:
        if args.target == "cuda":
            from .aot.cuda import build_cuda

            build_cuda(args.module, args.outdir, name=args.name, archs=args.cuda_arch)
            return 0
        build_library(
            args.module,
            args.outdir,
            name=args.name,
            target_cpu=args.target_cpu,
            blas=not args.no_blas,
        )
    except FusegradError as exc:
        print(f"fusegrad build: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
