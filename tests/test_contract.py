"""All HTTP traffic the session recorded must match the vendors' own API descriptions.

conftest.py moves this test to the end of the session, after every test that recorded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.contract_errata import ERRATA, corrected_checker

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"the shared contract descriptions are not at {SHARED}"
)
def test_recorded_traffic_conforms_to_the_api_descriptions(
    contract_trace_dir: Path, tmp_path: Path
) -> None:
    traces = sorted(p for p in contract_trace_dir.rglob("*.jsonl") if p.stat().st_size > 0)
    assert traces, (
        f"no HTTP traffic was recorded in {contract_trace_dir}: run this test together with "
        "the tests that use the emulators"
    )
    checker, applied = corrected_checker(SHARED, tmp_path)
    print("errata applied to the published descriptions:" if applied else "no errata needed")
    for line in applied:
        print(f"  - {line}")
    failed = []
    for trace in traces:
        result = subprocess.run(
            [sys.executable, str(checker), str(trace)],
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


@pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"the shared contract descriptions are not at {SHARED}"
)
def test_each_erratum_fixes_what_it_names(tmp_path: Path) -> None:
    """An erratum that still applied after its fix would patch forever; one that never
    matched would hide nothing but mislead the reader. Both are caught here."""
    for erratum in ERRATA:
        spec = json.loads((SHARED / "contract" / "openapi" / erratum.file).read_text())
        if erratum.applies(spec):
            erratum.fix(spec)
            assert not erratum.applies(spec), erratum.what
    checker, applied = corrected_checker(SHARED, tmp_path)
    assert checker.is_file()
    assert len(applied) <= len(ERRATA)
