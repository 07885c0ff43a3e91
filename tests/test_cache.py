"""The on-disk kernel cache (runtime/cache.py): a new process loads what an earlier one
compiled, with the same results; bad entries are rebuilt, concurrent writers are safe, and
a cache that cannot be written never stops compilation. Fresh processes run as subprocesses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import llvmlite.binding as llvm
import pytest
from fusegrad.runtime import cache, jit

SCRIPT = """
import json, warnings
import numpy as np
import fusegrad as fg
from fusegrad import derivative_cache
from fusegrad.runtime import cache

warnings.simplefilter("always")
def loss(w, X, y):
    return np.sum(np.log1p(np.exp(-y * (X @ w))))

rng = np.random.default_rng(0)
w, X, y = rng.standard_normal(4), rng.standard_normal((9, 4)), np.sign(rng.standard_normal(9))
with warnings.catch_warnings(record=True) as caught:
    value, grad = fg.compile_grad(loss)(w, X, y)
    hessian = fg.compile_hessian(loss)(w, X, y)[2]
results = [float(value).hex()] + [float(g).hex() for g in grad] + [float(h).hex() for h in hessian.ravel()]
totals = {k: cache.stats[k] + derivative_cache.stats.get(k, 0) for k in cache.stats}
print(json.dumps({**totals, "kernels": cache.stats, "derivatives": derivative_cache.stats,
                  "results": results, "warnings": [str(c.message) for c in caught]}))
"""
# The script compiles a gradient and a Hessian kernel, and derives one Hessian: three
# entries (the counts at the top level of `run`'s answer are over both kinds).
KERNELS = 2
ENTRIES = KERNELS + 1


def run(folder, **env) -> dict:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith("FUSEGRAD_CACHE")
    }
    environment["FUSEGRAD_CACHE_DIR"] = str(folder)
    environment.update(env)
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=environment,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def entries(folder) -> list[Path]:
    return sorted(Path(folder).glob(f"*{cache.SUFFIX}"))


def test_a_warm_process_loads_the_kernels_and_computes_the_same(tmp_path):
    cold = run(tmp_path)
    assert (cold["kernels"]["hits"], cold["kernels"]["stores"]) == (0, KERNELS)
    assert (cold["derivatives"]["hits"], cold["derivatives"]["stores"]) == (0, 1)
    # a store replaces the file (a new inode); a hit only refreshes its modification time
    stamps = [(p, p.stat().st_ino) for p in entries(tmp_path)]
    assert len(stamps) == ENTRIES
    warm = run(tmp_path)
    assert (warm["kernels"]["hits"], warm["kernels"]["misses"]) == (KERNELS, 0)
    assert (warm["derivatives"]["hits"], warm["derivatives"]["misses"]) == (1, 0)
    assert warm["stores"] == 0
    assert warm["results"] == cold["results"]  # bit for bit
    assert [(p, p.stat().st_ino) for p in entries(tmp_path)] == stamps  # not rewritten


def test_cache_off_writes_nothing(tmp_path):
    stats = run(tmp_path / "kernels", FUSEGRAD_CACHE="0")
    assert stats["hits"] == stats["stores"] == 0
    assert not (tmp_path / "kernels").exists()


def test_cache_directory_defaults_to_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("FUSEGRAD_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.directory() == tmp_path / "fusegrad"
    monkeypatch.setenv("FUSEGRAD_CACHE_DIR", str(tmp_path / "mine"))
    assert cache.directory() == tmp_path / "mine"


@pytest.mark.parametrize("damage", ["truncate", "flip a payload byte", "empty"])
def test_a_bad_entry_is_rebuilt_and_replaced(tmp_path, damage):
    cold = run(tmp_path)
    path = entries(tmp_path)[0]
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip a payload byte":
        data[-100] ^= 0xFF
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    repaired = run(tmp_path)
    assert (repaired["bad_entries"], repaired["stores"], repaired["hits"]) == (
        1,
        1,
        ENTRIES - 1,
    )
    assert repaired["results"] == cold["results"]
    warm = run(tmp_path)
    assert (warm["hits"], warm["bad_entries"]) == (ENTRIES, 0)


def test_concurrent_processes_fill_an_empty_cache(tmp_path):
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith("FUSEGRAD_CACHE")
    }
    environment["FUSEGRAD_CACHE_DIR"] = str(tmp_path)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT],
            env=environment,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [
        json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1])
        for p in processes
    ]
    assert all(p.returncode == 0 for p in processes)
    assert len({json.dumps(o["results"]) for o in outputs}) == 1
    assert len(entries(tmp_path)) == ENTRIES
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    warm = run(tmp_path)
    assert (warm["hits"], warm["bad_entries"]) == (ENTRIES, 0)


def test_an_unwritable_cache_directory_still_compiles(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    reference = run(tmp_path / "good")
    stats = run(blocker / "kernels")  # cannot be created: its parent is a file
    assert stats["results"] == reference["results"]
    assert stats["stores"] == 0
    assert len(stats["warnings"]) == 1 and "cache is off" in stats["warnings"][0]


def test_the_key_depends_on_version_target_and_kernel(monkeypatch):
    import fusegrad

    def key(**changes):
        monkeypatch.setattr(cache, "_environment", None)
        with monkeypatch.context() as patch:
            for target, name, value in changes.get("patches", ()):
                patch.setattr(target, name, value)
            result = cache.kernel_key("digest", (0, 1), changes.get("blas", True), 2)
        monkeypatch.setattr(cache, "_environment", None)
        return result

    base = key()
    assert key() == base
    assert key(patches=[(fusegrad, "__version__", "999.0")]) != base
    other_cpu = lambda: ("some-other-cpu", "+avx2")  # noqa: E731
    assert key(patches=[(jit, "host_cpu", other_cpu)]) != base
    assert (
        key(patches=[(llvm, "get_process_triple", lambda: "aarch64-unknown-linux-gnu")])
        != base
    )
    assert key(blas=False) != base


def _fill(folder: Path, sizes_and_ages) -> list[Path]:
    """Entries of the given sizes, the first the least recently used."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, (size, age_s) in enumerate(sizes_and_ages):
        path = folder / f"{number:064x}{cache.SUFFIX}"
        path.write_bytes(b"x" * size)
        stamp = 1_700_000_000 - age_s
        os.utime(path, (stamp, stamp))
        paths.append(path)
    return paths


def test_eviction_removes_the_least_recently_used_down_to_three_quarters(tmp_path):
    paths = _fill(tmp_path, [(100, 50), (100, 40), (100, 30), (100, 20), (100, 10)])
    assert cache.evict(tmp_path, limit=500) == 0  # at the limit: nothing to do
    assert cache.evict(tmp_path, limit=400) == 2  # 500 > 400: down to ≤ 300
    assert [p.exists() for p in paths] == [False, False, True, True, True]


def test_a_hit_makes_an_entry_recent(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEGRAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cache, "_broken", None)
    monkeypatch.setenv("FUSEGRAD_CACHE", "1")
    old, new = "a" * 64, "b" * 64
    cache.store(old, b"old payload")
    cache.store(new, b"new payload")
    for key, age_s in ((old, 20), (new, 10)):
        stamp = 1_700_000_000 - age_s
        os.utime(tmp_path / f"{key}{cache.SUFFIX}", (stamp, stamp))
    assert cache.load(old) == b"old payload"  # now the most recent
    size = (tmp_path / f"{old}{cache.SUFFIX}").stat().st_size
    cache.evict(tmp_path, limit=size * 3 // 2)  # room for one entry
    assert (tmp_path / f"{old}{cache.SUFFIX}").exists()
    assert not (tmp_path / f"{new}{cache.SUFFIX}").exists()


def test_a_store_keeps_the_folder_under_the_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEGRAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cache, "_broken", None)
    monkeypatch.setenv("FUSEGRAD_CACHE", "1")
    monkeypatch.setenv("FUSEGRAD_CACHE_MAX_MB", str(4000 / 2**20))  # 4000 bytes
    for number in range(10):
        cache.store(f"{number:064x}", bytes(1000))
    total = sum(p.stat().st_size for p in entries(tmp_path))
    assert 0 < total <= 4000
    assert (tmp_path / f"{9:064x}{cache.SUFFIX}").exists()  # the newest stays


def test_stale_temp_files_are_removed_fresh_ones_kept(tmp_path):
    stale, fresh = tmp_path / ".tmp-stale.kernel", tmp_path / ".tmp-fresh.kernel"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(stale, (1_000_000_000, 1_000_000_000))
    assert cache.evict(tmp_path, limit=10**9) == 1
    assert not stale.exists() and fresh.exists()


def test_a_bad_size_limit_warns_and_uses_the_default(monkeypatch):
    monkeypatch.setenv("FUSEGRAD_CACHE_MAX_MB", "lots")
    with pytest.warns(RuntimeWarning, match="FUSEGRAD_CACHE_MAX_MB"):
        assert cache.max_bytes() == cache.DEFAULT_MAX_MB * 2**20


def test_the_source_fingerprint_follows_every_source_file_below_the_folders(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"ignored")
    (tmp_path / "notes.txt").write_text("ignored")
    rows = []
    cache._fingerprint_rows(str(tmp_path), "", rows)
    assert [row.split()[0] for row in rows] == ["a.py", "sub/b.py"]
    (tmp_path / "sub" / "b.py").write_text("y = 22\n")  # another size
    changed = []
    cache._fingerprint_rows(str(tmp_path), "", changed)
    assert changed[0] == rows[0] and changed[1] != rows[1]
    assert len(cache._source_fingerprint()) == 64


def test_the_cache_command_shows_and_clears_the_entries(tmp_path):
    run(tmp_path)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FUSEGRAD_CACHE")}
    environment["FUSEGRAD_CACHE_DIR"] = str(tmp_path)

    def command(*args) -> str:
        completed = subprocess.run(
            [sys.executable, "-m", "fusegrad", "cache", *args],
            env=environment, capture_output=True, text=True, timeout=60, check=True,
        )
        return completed.stdout

    shown = command()
    assert f"folder:  {tmp_path}" in shown and "state:   on" in shown
    assert f"entries: {ENTRIES} (" in shown and "of 512 MB)" in shown
    assert command("--clear") == f"removed {ENTRIES} files from {tmp_path}\n"
    assert "entries: 0 (0.0 MB" in command()
    environment["FUSEGRAD_CACHE"] = "0"
    assert "state:   off (FUSEGRAD_CACHE=0)" in command()
