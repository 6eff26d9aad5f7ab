"""All HTTP traffic the session recorded must match the vendors' own API descriptions.

conftest.py moves this test to the end of the session, after every test that recorded.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
CHECKER = SHARED / "contract" / "check_traffic.py"


@pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"the shared contract descriptions are not at {SHARED}"
)
def test_recorded_traffic_conforms_to_the_api_descriptions(contract_trace_dir: Path) -> None:
    traces = sorted(p for p in contract_trace_dir.rglob("*.jsonl") if p.stat().st_size > 0)
    assert traces, (
        f"no HTTP traffic was recorded in {contract_trace_dir}: run this test together with "
        "the tests that use the emulators"
    )
    failed = []
    for trace in traces:
        result = subprocess.run(
            [sys.executable, str(CHECKER), str(trace)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        print(f"== {trace.name}\n{result.stdout}{result.stderr}")
        # ", 0 not conforming," and not a bare substring: "10 not conforming" ends the same.
        if result.returncode != 0 or ", 0 not conforming," not in result.stdout:
            failed.append(trace.name)
    assert not failed, f"non-conforming traffic in {failed}; see the checker output above"
