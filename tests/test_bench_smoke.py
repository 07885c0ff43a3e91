"""The benchmark command runs end to end (a quick run with small sizes)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6")


def test_quick_benchmark_run_writes_a_report(tmp_path):
    output = tmp_path / "results.md"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--output", str(output)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = output.read_text()
    assert "FAILED" not in report.upper()
    sections = {section.split(":")[0]: section for section in report.split("\n## ")}
    for workload in WORKLOADS:
        rows = [line for line in sections[workload].splitlines() if " | fusegrad | " in line]
        assert rows, f"{workload}: no fusegrad row"
        for row in rows:
            assert "| ok (" in row, row  # fusegrad ran and agreed with NumPy
