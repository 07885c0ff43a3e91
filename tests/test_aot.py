"""Ahead-of-time C libraries (`python -m fusegrad build`): the files, the C API, and
kernels that compute what the JIT computes, called from C with no Python."""

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fusegrad.__main__ import main
from fusegrad.aot import build_library

cffi = pytest.importorskip("cffi")
pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None or not sys.platform.startswith("linux"),
    reason="AOT builds need a C compiler (cc) on Linux",
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "c"

SMALL_MODULE = """
import numpy as np
import fusegrad as fg


@fg.compile_hessian
def logistic(w: fg.f64["n"], X: fg.f64["m", "n"], y: fg.f64["m"]):
    return np.sum(np.log1p(np.exp(-y * (X @ w))))


@fg.compile_grad(wrt=("W", "b"))
def ridge32(W: fg.f32["k", "n"], b: fg.f32["k"], X: fg.f32["m", "n"], Y: fg.f32["m", "k"]):
    R = X @ W.T + b - Y
    return 0.5 * np.sum(R * R) + 0.1 * np.sum(W * W)


@fg.compile
def diffs(x: fg.f64["n"]):
    return x[1:] - x[:-1], x[2] * 2.0


def energy(x: fg.f64["n"]):
    return np.sum(np.tanh(x) ** 2)


energy_value = fg.compile(energy)   # two kernels traced from one function named alike
energy_grad = fg.compile_grad(energy)


@fg.compile
def exp(double: fg.f64["n"], n: fg.f64["n"]):   # a libm name, a C keyword, a dim's name
    return fg.exp(double) * n


@fg.compile
def jit_only(x):
    return x * 2
"""
API = {
    "logistic",
    "ridge32",
    "diffs",
    "energy_value",
    "energy_grad",
    "exp_",
    "small_strerror",
    "small_set_num_threads",
    "small_get_num_threads",
}


@pytest.fixture(scope="module")
def small_module(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "small.py"
    path.write_text(SMALL_MODULE)
    return path


def _build(module, outdir, **options):
    lines = []
    result = build_library(module, outdir, echo=lines.append, **options)
    return result, lines


@pytest.fixture(scope="module", params=["blas", "loops"])
def built(request, small_module, tmp_path_factory):
    """The small module built for the x86-64 baseline, with and without BLAS."""
    outdir = tmp_path_factory.mktemp(f"out_{request.param}")
    result, lines = _build(small_module, outdir, target_cpu="x86-64", blas=request.param == "blas")
    result.lines = lines
    result.variant = request.param
    return result


@pytest.fixture(scope="module")
def jit_module(small_module):
    sys.path.insert(0, str(small_module.parent))
    try:
        import small
    finally:
        sys.path.remove(str(small_module.parent))
    return small


def _load(result):
    """The library through cffi (ABI mode), declared from its own header."""
    ffi = cffi.FFI()
    text = result.header.read_text()
    declarations = re.findall(r"^(?:int|void|const char \*)\s*\w+\([^;]*;", text, re.MULTILINE)
    ffi.cdef("\n".join(declarations))
    return ffi, ffi.dlopen(str(result.shared))


def _buffers(ffi, *arrays):
    types = {np.float64: "double[]", np.float32: "float[]"}
    return [ffi.from_buffer(types[a.dtype.type], a) for a in arrays]


# -- the files and the report ---------------------------------------------------------------
def test_build_writes_the_library_and_reports_each_kernel(built):
    names = sorted(p.name for p in built.files)
    assert names == ["libsmall.a", "libsmall.so", "small.h", "small.pc"]
    assert all(p.is_file() for p in built.files)
    assert not (built.outdir / "build.log").exists()
    for function in ["logistic", "ridge32", "diffs", "energy_value", "energy_grad", "exp_"]:
        assert any(re.match(rf"  {function} +\(.*\) -> .* \d+ ms$", line) for line in built.lines)
    assert any("skipped jit_only(x)" in line for line in built.lines)
    assert any(line.startswith("link: cc prog.c") for line in built.lines)
    pc = (built.outdir / "small.pc").read_text()
    assert f"prefix={built.outdir}" in pc and "-lsmall" in pc
    assert ("-lscipy_openblas" in pc) == (built.variant == "blas")


def test_header_signatures_follow_the_convention(built):
    text = built.header.read_text()
    flat = re.sub(r"\s+", " ", text)
    assert (
        "int logistic(int64_t n, int64_t m, const double *w, const double *X, const double *y, "
        "double *value, double *grad_w, double *hess_w);" in flat
    )
    assert (
        "int ridge32(int64_t k, int64_t n, int64_t m, const float *W, const float *b, "
        "const float *X, const float *Y, float *value, float *grad_W, float *grad_b);" in flat
    )
    assert "int diffs(int64_t n, const double *x, double *out0, double *out1);" in flat
    assert "int exp_(int64_t n_, const double *double_, const double *n, double *out);" in flat
    assert "small.py:7: def logistic(" in text  # the Python source line
    assert "∇²_w" in text and "hess_w [n, n]" in text  # the math, the shapes
    assert "needs:   n >= 3" in text and "SMALL_ERR_INCONSISTENT_DIMS (3)" in text


@pytest.mark.parametrize("language", ["c99", "c++"])
def test_header_compiles_as_c99_and_cpp(built, language, tmp_path):
    compiler = "cc" if language == "c99" else "c++"
    if shutil.which(compiler) is None:
        pytest.skip(f"no {compiler}")
    flags = ["-std=c99", "-pedantic", "-x", "c"] if language == "c99" else ["-x", "c++"]
    done = subprocess.run(
        [compiler, *flags, "-Wall", "-Wextra", "-Werror", "-fsyntax-only", str(built.header)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


# -- the kernels compute what the JIT computes ---------------------------------------------
def test_kernels_equal_the_jit(built, jit_module):
    ffi, lib = _load(built)
    rng = np.random.default_rng(1)
    m, n, k = 20000, 7, 3  # enough rows for the thread pool
    X = rng.standard_normal((m, n))
    y = np.where(rng.standard_normal(m) > 0, 1.0, -1.0)
    w = 0.1 * rng.standard_normal(n)
    value, grad, hess = np.empty(1), np.empty(n), np.empty((n, n))
    assert lib.logistic(n, m, *_buffers(ffi, w, X, y, value, grad, hess)) == 0
    expected = jit_module.logistic(w, X, y)
    np.testing.assert_allclose(value[0], expected[0], rtol=1e-12)
    np.testing.assert_allclose(grad, expected[1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hess, expected[2], rtol=1e-10, atol=1e-12)

    W, b = rng.standard_normal((k, n), np.float32), rng.standard_normal(k, np.float32)
    X32, Y = X[:500].astype(np.float32), rng.standard_normal((500, k), np.float32)
    value32, gW, gb = np.empty(1, np.float32), np.empty((k, n), np.float32), np.empty(k, np.float32)
    assert lib.ridge32(k, n, 500, *_buffers(ffi, W, b, X32, Y, value32, gW, gb)) == 0
    expected = jit_module.ridge32(W, b, X32, Y)
    np.testing.assert_allclose(value32[0], expected[0], rtol=1e-5)
    np.testing.assert_allclose(gW, expected[1][0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gb, expected[1][1], rtol=1e-4, atol=1e-4)

    x = rng.standard_normal(9)
    d, twice = np.empty(8), np.empty(1)
    assert lib.diffs(9, *_buffers(ffi, x, d, twice)) == 0
    np.testing.assert_array_equal(d, np.diff(x))
    assert twice[0] == 2 * x[2]

    e_value, e_grad = np.empty(1), np.empty(9)
    assert lib.energy_value(9, *_buffers(ffi, x, e_value)) == 0
    assert lib.energy_grad(9, *_buffers(ffi, x, e_value, e_grad)) == 0
    np.testing.assert_allclose(e_grad, jit_module.energy_grad(x)[1], rtol=1e-13)
    out = np.empty(9)
    assert lib.exp_(9, *_buffers(ffi, x, x, out)) == 0
    np.testing.assert_allclose(out, np.exp(x) * x, rtol=1e-15)


def test_bad_dims_return_a_status_and_strerror_explains_it(built):
    ffi, lib = _load(built)
    w, X, y, out = np.zeros(3), np.zeros((4, 3)), np.zeros(4), np.full(16, 7.0)
    assert lib.logistic(-1, 4, *_buffers(ffi, w, X, y, out, out, out)) == 1
    assert lib.logistic(3, -4, *_buffers(ffi, w, X, y, out, out, out)) == 1
    assert (out == 7.0).all()  # nothing written
    assert ffi.string(lib.small_strerror(1)) == b"a dimension is negative"
    assert lib.diffs(2, *_buffers(ffi, w, out, out)) == 3  # x[2] needs n >= 3
    assert ffi.string(lib.small_strerror(3)) == b"inconsistent dimensions"
    assert b"BLAS" in ffi.string(lib.small_strerror(4))
    assert ffi.string(lib.small_strerror(99)) == b"unknown status"


# -- symbols and dependencies ---------------------------------------------------------------
def _tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"no {name}")
    return path


def test_the_shared_library_exports_only_the_api(built):
    output = subprocess.run(
        [_tool("nm"), "-D", "--defined-only", str(built.shared)],
        check=False,
        capture_output=True,
        text=True,
    ).stdout
    assert {line.split()[-1] for line in output.splitlines()} == API
    static = subprocess.run(
        [_tool("nm"), "--defined-only", "--extern-only", str(built.static)],
        check=False,
        capture_output=True,
        text=True,
    ).stdout
    globals_ = {line.split()[-1] for line in static.splitlines() if len(line.split()) == 3}
    assert globals_ - API and all(name.startswith("small_") for name in globals_ - API)


def test_dependencies_are_libc_libm_pthreads_and_blas_only_where_used(built):
    dynamic = subprocess.run(
        [_tool("readelf"), "-d", str(built.shared)], check=False, capture_output=True, text=True
    ).stdout
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic))
    system = {n for n in needed if re.match(r"lib(c|m|pthread)\.so|ld-linux", n)}
    blas = needed - system
    assert blas == ({"libscipy_openblas.so"} if built.variant == "blas" else set())
    undefined = subprocess.run(
        [_tool("nm"), "-D", "--undefined-only", str(built.shared)],
        check=False,
        capture_output=True,
        text=True,
    ).stdout
    assert "_ZGV" not in undefined  # no libmvec: transcendentals are generated code


def test_the_x86_64_baseline_target_uses_no_avx(built):
    disassembly = subprocess.run(
        [_tool("objdump"), "-d", "--no-show-raw-insn", str(built.shared)],
        check=False,
        capture_output=True,
        text=True,
    ).stdout
    # register names only ("symmetric" contains "ymm")
    assert "%xmm" in disassembly and not re.search(r"%[yz]mm\d", disassembly)


# -- C programs ------------------------------------------------------------------------------
DRIVER = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include "small.h"

enum { M = 30000, N = 5 };
static double X[M * N], y[M], w[N];

static void *fit(void *result)
{
    double *out = (double *)result;
    int status = logistic(N, M, w, X, y, out, out + 1, out + 1 + N);
    return status == SMALL_OK ? out : NULL;
}

int main(void)
{
    static double results[4][1 + N + N * N];
    pthread_t threads[4];
    int i, t;
    for (i = 0; i < M * N; ++i)
        X[i] = ((i * 7919) % 1000) / 500.0 - 1.0;
    for (i = 0; i < M; ++i)
        y[i] = (i % 3) ? 1.0 : -1.0;
    for (i = 0; i < N; ++i)
        w[i] = 0.01 * i;
    for (t = 0; t < 4; ++t)  /* concurrent calls */
        pthread_create(&threads[t], NULL, fit, results[t]);
    for (t = 0; t < 4; ++t) {
        void *ok;
        pthread_join(threads[t], &ok);
        if (ok == NULL)
            return 1;
    }
    for (t = 1; t < 4; ++t)
        for (i = 0; i < 1 + N + N * N; ++i)
            if (results[t][i] != results[0][i])
                return 2;
    printf("%s|%.17g", small_strerror(diffs(-1, w, w, w)), results[0][0]);
    for (i = 0; i < N; ++i)
        printf(" %.17g", results[0][1 + i]);
    printf("\n");
    return 0;
}
"""


def test_a_c_program_links_the_static_library(built, jit_module, tmp_path):
    source = tmp_path / "driver.c"
    source.write_text(DRIVER)
    program = tmp_path / "driver"
    command = built.link_line(static=True).split()
    command = ["cc", "-std=c99", "-Wall", "-Werror", str(source), *command[2:], "-o", str(program)]
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    run = subprocess.run([str(program)], check=False, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    message, numbers = run.stdout.strip().split("|")
    assert message == "a dimension is negative"
    M, N = 30000, 5
    i = np.arange(M * N)
    X = (((i * 7919) % 1000) / 500.0 - 1.0).reshape(M, N)
    y = np.where(np.arange(M) % 3, 1.0, -1.0)
    value, grad, _ = jit_module.logistic(0.01 * np.arange(N), X, y)
    np.testing.assert_allclose([float(v) for v in numbers.split()], [value, *grad], rtol=1e-12)


def _newton_jit(logistic, X, y, tol=1e-8, max_steps=50):
    """The C example's algorithm with the JIT kernel: w <- w - H^-1 g by Cholesky."""
    w = np.zeros(X.shape[1])
    for _ in range(max_steps + 1):
        _, g, H = logistic(w, X, y)
        if np.linalg.norm(g) < tol:
            return w
        L = np.linalg.cholesky(H)
        w = w - np.linalg.solve(L.T, np.linalg.solve(L, g))
    raise AssertionError("no convergence")


def test_the_c_newton_example_fits_what_the_jit_fits(tmp_path):
    build = tmp_path / "build"
    if shutil.which("make"):
        done = subprocess.run(
            ["make", "-C", str(EXAMPLE), f"BUILD={build}", f"PYTHON={sys.executable}"],
            check=False,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    else:
        result, _ = _build(EXAMPLE / "model.py", build)
        command = [
            "cc",
            "-O2",
            "-std=c99",
            f"-I{build}",
            str(EXAMPLE / "newton.c"),
            "-o",
            str(build / "newton"),
            *result.link_line().split()[3:],
            "-lm",
        ]
        subprocess.run(command, check=True)
    rng = np.random.default_rng(3)
    m, n = 3000, 12
    X = rng.standard_normal((m, n))
    y = np.where(X @ rng.standard_normal(n) + rng.standard_normal(m) > 0, 1.0, -1.0)
    data = tmp_path / "data.bin"
    data.write_bytes(np.array([m, n], np.int64).tobytes() + X.tobytes() + y.tobytes())
    run = subprocess.run(
        [str(build / "newton"), str(data)], check=False, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert "converged" in run.stdout
    w_c = np.array([float(v) for v in re.findall(r"^w\[\d+\] = (\S+)$", run.stdout, re.MULTILINE)])

    sys.path.insert(0, str(EXAMPLE))
    try:
        import model
    finally:
        sys.path.remove(str(EXAMPLE))
    w_jit = _newton_jit(model.logistic, X, y)
    np.testing.assert_allclose(w_c, w_jit, rtol=0, atol=1e-12)


# -- errors: one line, exit status 2 ---------------------------------------------------------
def _error(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("fusegrad build: error: ")
    return lines[0]


def test_an_unannotated_parameter_is_named(tmp_path, capsys):
    module = tmp_path / "partial.py"
    module.write_text(
        textwrap.dedent("""
        import fusegrad as fg

        @fg.compile_grad
        def loss(w: fg.f64["n"], X, y: fg.f64["m"]):
            return fg.sum(X @ w - y)
    """)
    )
    line = _error(["build", str(module), "-o", str(tmp_path / "out")], capsys)
    assert "loss: parameter 'X' not annotated" in line and 'fg.f64["n"]' in line
    assert not (tmp_path / "out").exists()


def test_a_module_without_compiled_functions_is_an_error(tmp_path, capsys):
    module = tmp_path / "plain.py"
    module.write_text("import numpy as np\n\ndef f(x):\n    return x\n")
    line = _error(["build", str(module), "-o", str(tmp_path / "out")], capsys)
    assert "defines no compiled function" in line and "@fg.compile" in line


def test_a_module_with_only_unannotated_functions_is_an_error(tmp_path, capsys):
    module = tmp_path / "bare.py"
    module.write_text("import fusegrad as fg\n\n@fg.compile\ndef f(x, y):\n    return x + y\n")
    line = _error(["build", str(module), "-o", str(tmp_path / "out")], capsys)
    assert "f(x, y)" in line and "annotate" in line


@pytest.mark.parametrize("how", ["CC", "PATH"])
def test_a_missing_c_compiler_says_what_to_do(small_module, tmp_path, capsys, monkeypatch, how):
    if how == "CC":
        monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    else:
        monkeypatch.delenv("CC", raising=False)
        monkeypatch.setenv("PATH", str(tmp_path))
    line = _error(["build", str(small_module), "-o", str(tmp_path / "out")], capsys)
    assert "no C compiler" in line and "CC=" in line


def test_a_failing_link_is_one_line_with_a_log(tmp_path, capsys, monkeypatch):
    module = tmp_path / "tiny.py"
    module.write_text(
        "import fusegrad as fg\n\n@fg.compile\ndef f(x: fg.f64['n']):\n    return x * 2\n"
    )
    monkeypatch.setenv("CC", "cc -Wl,--no-such-linker-option")
    line = _error(["build", str(module), "-o", str(tmp_path / "out")], capsys)
    assert "linking libtiny.so failed" in line and "no-such-linker-option" in line
    assert "--no-such-linker-option" in (tmp_path / "out" / "build.log").read_text()
    assert not (tmp_path / "out" / "libtiny.so").exists()


def test_a_library_name_must_be_a_c_identifier(small_module, tmp_path, capsys):
    line = _error(["build", str(small_module), "-o", str(tmp_path), "--name", "my-lib"], capsys)
    assert "--name" in line


def test_the_command_line_runs_as_a_module(tmp_path):
    module = tmp_path / "cli.py"
    module.write_text(
        "import fusegrad as fg\n\n@fg.compile\ndef twice(x: fg.f32['n']):\n    return x * 2\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fusegrad",
            "build",
            str(module),
            "-o",
            str(tmp_path / "out"),
            "--target-cpu",
            "x86-64-v3",
            "--no-blas",
        ],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^  twice +\(n\) -> out +\d+ ms$", done.stdout, re.MULTILINE)
    assert (
        "int twice(int64_t n, const float *x, float *out);"
        in (tmp_path / "out" / "cli.h").read_text()
    )


def test_the_c_runtime_sources_are_shipped_in_the_package():
    # A wheel holds only what pyproject.toml maps into the package: the AOT build
    # compiles csrc/ from fusegrad/csrc/ when installed without a checkout.
    tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11

    from fusegrad.aot import link

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    assert "fusegrad.csrc" in setuptools["packages"]
    assert setuptools["package-dir"]["fusegrad.csrc"] == "csrc"
    patterns = setuptools["package-data"]["fusegrad.csrc"]
    for name in (*link.RUNTIME_SOURCES, link.RUNTIME_HEADER):
        assert any(Path(name).match(pattern) for pattern in patterns), name
        assert (link.csrc_dir() / name).is_file()
