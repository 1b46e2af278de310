"""The fault matrix's smoke subset (`python -m bench.chaos --smoke`), as `make test` runs it.

Real PostgreSQL, Kafka and ML API with Toxiproxy in front of each (the harness starts its own:
the broker must advertise the proxy's address), a consumer killed with SIGKILL and the network
to PostgreSQL cut; the harness checks the exact final state and exits 1 on any failed row.
The whole matrix is `make chaos`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import ROOT

pytestmark = [pytest.mark.chaos, pytest.mark.kafka]


def test_smoke_faults_end_in_the_exact_state_with_nothing_lost_or_duplicated(
    tmp_path: Path,
) -> None:
    out = tmp_path / "chaos-smoke.json"
    # About 50 s on a quiet 2-core machine; the limit leaves room for a loaded one.
    result = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    rows = json.loads(out.read_text())["rows"]
    assert [row["scenario"] for row in rows] == ["smoke-kill9", "smoke-pg-cut"]
    for row in rows:
        assert row["verdict"] == "PASS", row
        assert row["lost"] == row["duplicates"] == 0, row
        assert row["stored"] + row["dead_lettered"] == row["records_in"], row
        assert row["recover_s"], row
    assert "scenario" in result.stdout and "PASS" in result.stdout  # the table is printed
