"""The benchmark (``benchmarks/election.py``) still runs: a tiny configuration, end to end.

It starts candidate processes of every Python implementation on the embedded server, so it
takes about 20 seconds; it checks that every figure was measured, not what the figures are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
IMPLEMENTATIONS = ("ours", "ours-poll", "k8sa")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_benchmark_measures_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        str(REPO_ROOT / "benchmarks" / "election.py"),
        "--quick",
        "--implementations=" + ",".join(IMPLEMENTATIONS),
        "--lease-duration=2",
        "--renew-deadline=1.2",
        "--retry-period=0.25",
        "--handovers=3",
        "--expiry-handovers=1",
        "--failovers=1",
        "--followers=2",
        "--window=2",
        "--warmup=1",
        "--time-limit=1.5",
        f"--json={out}",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=110, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data: dict[str, Any] = json.loads(out.read_text())
    assert data["error"] is None
    for scenario, wanted in (("handover", 3), ("failover", 1)):
        for key in IMPLEMENTATIONS:
            result = data[scenario][key]
            expected = 1 if (scenario, key) == ("handover", "k8sa") else wanted
            assert result["error"] is None, result["error"]
            assert len(result["samples"]) == expected, (scenario, key)
    (phase,) = data["load"]
    assert phase["followers"] == 2
    for key in IMPLEMENTATIONS:
        load = phase["results"][key]
        assert load["error"] is None, load["error"]
        assert load["leader_requests"].get("update", 0) > 0, key
        assert len(load["follower_requests"]) == 2, key
        assert {p["leader"] for p in load["processes"]} == {True, False}, key
    for heading in ("Graceful handover", "Crash failover", "API requests per minute"):
        assert heading in done.stdout
