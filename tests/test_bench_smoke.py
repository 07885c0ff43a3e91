"""The benchmark command runs end to end (a quick run with small sizes)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_run_writes_a_report(tmp_path):
    output = tmp_path / "results.md"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--output", str(output)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = output.read_text()
    for workload in ("W1", "W2", "W3", "W6"):
        assert workload in report
    assert "FAILED" not in report.upper()
