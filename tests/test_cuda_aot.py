"""`python -m fusegrad build --target cuda`: the `.cu` files compile with nvcc, the launcher
compiles with cc (with its own driver declarations and with cuda.h), and the launcher's
control flow runs against a fake libcuda (tests/test_cuda_runtime.py's), with no GPU."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fusegrad.__main__ import main
from fusegrad.aot.collect import BuildError
from fusegrad.compiler import symbolic
from fusegrad.compiler.loopir import Buffer
from fusegrad.runtime.cuda import launcher, nvrtc

from test_cuda_runtime import FAKE_DRIVER, needs_nvrtc

CC = shutil.which("cc") or shutil.which("gcc")
NVCC = shutil.which("nvcc")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc)")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
pytestmark = needs_nvrtc


def _cuda_include() -> str | None:
    """The folder of cuda.h next to nvcc, if the toolkit has one."""
    if NVCC is None:
        return None
    for folder in (Path(NVCC).resolve().parent.parent / "include", Path("/usr/local/cuda/include")):
        if (folder / "cuda.h").is_file():
            return str(folder)
    text = Path(NVCC).read_text(errors="replace") if Path(NVCC).stat().st_size < 4096 else ""
    for word in text.split():  # a wrapper script: exec /usr/local/cuda-X/bin/nvcc "$@"
        candidate = Path(word).parent.parent / "include" / "cuda.h"
        if word.endswith("/nvcc") and candidate.is_file():
            return str(candidate.parent)
    return None


# -- a hand-written CudaProgram: tests the launcher without the renderer -------------------

SQUARE_SOURCE = r"""
extern "C" __global__ void square_k0(long long n, const double *x, double *out0, double *tmp) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) { tmp[i] = x[i]; out0[i] = tmp[i] * x[i]; }
}
"""

SQUARE_MODULE = """
import fusegrad as fg

@fg.compile(target="cuda")
def square(x: fg.f64["n"]):
    return x * x
"""


@dataclass(frozen=True)
class Launch:
    kernel: str
    grid: object
    block: int
    shared_bytes: int
    args: tuple


class SquareKernel:
    """What build_cuda reads of a CudaKernel, for `square` (one launch, one scratch)."""

    def __init__(self, function, tree):
        n = symbolic.Dim.symbol("n")
        self.program = types.SimpleNamespace(dims=["n"])
        self.source = SQUARE_SOURCE
        self.cuda = types.SimpleNamespace(
            name="square",
            source=SQUARE_SOURCE,
            dims=["n"],
            inputs=[Buffer("x", "float64", (n,), "input")],
            outputs=[Buffer("out0", "float64", (n,), "output")],
            scratch=[Buffer("tmp", "float64", (n,), "scratch")],
            steps=[Launch("square_k0", (n + 255) // 256, 256, 0, ("n", "x", "out0", "tmp"))],
        )


@pytest.fixture
def square_build(tmp_path, monkeypatch):
    monkeypatch.setattr(launcher, "CudaKernel", SquareKernel)
    (tmp_path / "model.py").write_text(SQUARE_MODULE)
    out = tmp_path / "out"
    assert main(["build", str(tmp_path / "model.py"), "-o", str(out), "--target", "cuda"]) == 0
    return out


def test_build_writes_cu_launcher_and_header(square_build):
    names = sorted(p.name for p in square_build.iterdir())
    assert names == ["model.h", "model_cuda.c", "model_square.cu"]
    header = (square_build / "model.h").read_text()
    assert "int square(int64_t n, const double *x, double *out);" in header
    assert "int square_device(int64_t n, const double *x, double *out);" in header
    assert "#define MODEL_ERR_CUDA" in header and "BLAS" not in header
    launcher_c = (square_build / "model_cuda.c").read_text()
    assert "square_sm80[" in launcher_c and "square_sm90[" in launcher_c
    assert "square_ptx[" in launcher_c  # the fallback for archs without a CUBIN
    assert "dim_floordiv((INT64_C(255) + n), INT64_C(256))" in launcher_c  # grid from dims


@needs_cc
def test_launcher_compiles_with_cc(square_build, tmp_path):
    subprocess.run(
        [CC, "-std=c99", "-Wall", "-Werror", "-O2", "-fPIC", "-c",
         str(square_build / "model_cuda.c"), f"-I{square_build}", "-o", str(tmp_path / "a.o")],
        check=True,
    )  # fmt: skip
    include = _cuda_include()
    if include is None:
        pytest.skip("no cuda.h to check the launcher's driver declarations against")
    subprocess.run(
        [CC, "-std=c99", "-O2", "-c", "-DFUSEGRAD_USE_CUDA_H", f"-I{include}",
         str(square_build / "model_cuda.c"), f"-I{square_build}", "-o", str(tmp_path / "b.o")],
        check=True,
    )  # fmt: skip


@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_generated_cu_compiles_with_nvcc(square_build, tmp_path, arch):
    cubin = tmp_path / f"square_{arch}.cubin"
    subprocess.run(
        [NVCC, "-cubin", f"-arch={arch}", str(square_build / "model_square.cu"), "-o", str(cubin)],
        check=True,
    )
    assert cubin.read_bytes()[:4] == b"\x7fELF"


FAKE_PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include "model.h"
int64_t *fake_last_launch(void);
int main(void) {
    double x[1000], out[1000];
    for (int i = 0; i < 1000; i++) x[i] = i;
    int status = square(1000, x, out);
    int64_t *launch = fake_last_launch();
    printf("%d %lld %lld %lld\n", status, (long long)launch[0], (long long)launch[1],
           (long long)launch[3]);
    printf("%d\n", square(-1, x, out));
    printf("%d\n", square_device(0, x, out));  /* n = 0: no launch, status 0 */
    printf("%s\n", model_strerror(5));
    return 0;
}
"""


@needs_cc
def test_launcher_runs_against_a_fake_driver(square_build, tmp_path):
    """Status codes, grid = ceil(n / 256), dims passed by value, without a GPU."""
    (tmp_path / "fake.c").write_text(FAKE_DRIVER)
    (tmp_path / "main.c").write_text(FAKE_PROGRAM)
    program = tmp_path / "program"
    subprocess.run(
        [CC, "-std=gnu99", "-O1", "-o", str(program), str(tmp_path / "main.c"),
         str(square_build / "model_cuda.c"), str(tmp_path / "fake.c"), f"-I{square_build}",
         "-pthread"],
        check=True,
    )  # fmt: skip
    lines = subprocess.run([str(program)], capture_output=True, text=True, check=True)
    first, negative, empty, message = lines.stdout.splitlines()
    assert first.split() == ["0", "4", "256", "1000"]  # status, grid, block, n
    assert (negative, empty) == ("1", "0")
    assert "CUDA driver call failed" in message
    failed = subprocess.run(
        [str(program)], capture_output=True, text=True, check=True, env={"FAKE_CUDA_INIT": "100"}
    )
    assert failed.stdout.splitlines()[0].split()[0] == "5"  # MODEL_ERR_CUDA


@needs_cc
@pytest.mark.parametrize("capability, loads", [("86", "cubin"), ("75", "ptx"), ("100", "ptx")])
def test_launcher_picks_the_cubin_of_the_devices_major_arch(
    square_build, tmp_path, capability, loads
):
    """sm_86 runs the sm_80 CUBIN; sm_75 and sm_100 get the PTX (the fake driver rejects
    PTX, so choosing it shows as status 5)."""
    (tmp_path / "fake.c").write_text(FAKE_DRIVER)
    (tmp_path / "main.c").write_text(FAKE_PROGRAM)
    program = tmp_path / "program"
    subprocess.run(
        [CC, "-std=gnu99", "-o", str(program), str(tmp_path / "main.c"),
         str(square_build / "model_cuda.c"), str(tmp_path / "fake.c"), f"-I{square_build}",
         "-pthread"],
        check=True,
    )  # fmt: skip
    run = subprocess.run(
        [str(program)], capture_output=True, text=True, check=True,
        env={"FAKE_CUDA_CC": capability},
    )  # fmt: skip
    status = run.stdout.split()[0]
    assert status == ("0" if loads == "cubin" else "5")


def test_bad_arch_and_reserved_names_are_build_errors(tmp_path, monkeypatch):
    from fusegrad.aot.cuda import build_cuda

    monkeypatch.setattr(launcher, "CudaKernel", SquareKernel)
    (tmp_path / "model.py").write_text(SQUARE_MODULE)
    with pytest.raises(BuildError, match="'gfx90' is not an arch"):
        build_cuda(tmp_path / "model.py", tmp_path / "out", archs="sm_80,gfx90")
    (tmp_path / "clash.py").write_text(
        SQUARE_MODULE + "\n@fg.compile\ndef square_device(x: fg.f64['n']):\n    return x\n"
    )
    with pytest.raises(BuildError, match="square_device: the name is taken"):
        build_cuda(tmp_path / "clash.py", tmp_path / "out", echo=lambda *_: None)


def test_bad_arch_from_the_command_line_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(launcher, "CudaKernel", SquareKernel)
    (tmp_path / "model.py").write_text(SQUARE_MODULE)
    code = main(["build", str(tmp_path / "model.py"), "-o", str(tmp_path / "o"),
                 "--target", "cuda", "--cuda-arch", "90"])  # fmt: skip
    assert code == 2
    assert "--cuda-arch: '90'" in capsys.readouterr().err


# -- the real renderer ----------------------------------------------------------------------

MODULE = textwrap.dedent(
    """
    import numpy as np
    import fusegrad as fg


    @fg.compile_grad
    def logistic(w: fg.f64["n"], X: fg.f64["m", "n"], y: fg.f64["m"]):
        return np.sum(np.log1p(np.exp(-y * (X @ w))))


    @fg.compile
    def chain(x: fg.f32["n"]):
        return np.sum(np.tanh(x) * np.exp(-x * x))
    """
)


@pytest.fixture
def real_build(tmp_path):
    pytest.importorskip("fusegrad.compiler.cuda.render")
    (tmp_path / "model.py").write_text(MODULE)
    out = tmp_path / "out"
    assert main(["build", str(tmp_path / "model.py"), "-o", str(out), "--target", "cuda"]) == 0
    return out


@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_rendered_kernels_compile_with_nvcc(real_build, tmp_path, arch):
    for source in sorted(real_build.glob("*.cu")):
        cubin = tmp_path / f"{source.stem}_{arch}.cubin"
        subprocess.run(
            [NVCC, "-cubin", f"-arch={arch}", str(source), "-o", str(cubin)], check=True
        )
        assert cubin.stat().st_size > 0


@needs_cc
def test_rendered_launcher_compiles_with_cc(real_build, tmp_path):
    header = (real_build / "model.h").read_text()
    assert "int logistic(int64_t m, int64_t n" in header or "int logistic(int64_t n" in header
    assert "int chain_device(int64_t n, const float *x, float *out);" in header
    subprocess.run(
        [CC, "-std=c99", "-Wall", "-Werror", "-O2", "-fPIC", "-c",
         str(real_build / "model_cuda.c"), f"-I{real_build}", "-o", str(tmp_path / "a.o")],
        check=True,
    )  # fmt: skip


def test_embedded_cubins_are_nvrtcs(real_build):
    """The launcher embeds exactly what NVRTC makes of the .cu file, for each arch."""
    source = (real_build / "model_chain.cu").read_text().split("\n", 1)[1]
    launcher_c = (real_build / "model_cuda.c").read_text()
    cubin = nvrtc.compile_cubin(source, "sm_90")
    start = launcher_c.index(f"chain_sm90[{len(cubin)}]")
    first_bytes = ",".join(str(b) for b in cubin[:24])
    assert first_bytes in launcher_c[start : start + 400]
    assert np.frombuffer(cubin[:4], np.uint8).tolist() == [0x7F, 0x45, 0x4C, 0x46]
