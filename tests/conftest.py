"""Shared fixtures: the session's contract trace, and loopback emulators recording into it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from syncd.http import TraceWriter
from syncd.sandbox.github import GitHubEmulator
from syncd.sandbox.jira import JiraEmulator
from syncd.sandbox.trello import TrelloEmulator

CONTRACT_TEST_FILE = "test_contract.py"

# Property tests: in CI the same examples every run (a failure there is the code's, not the
# draw's, and reproduces), locally fresh ones; HYPOTHESIS_PROFILE=thorough searches longer.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("thorough", max_examples=1000)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE")
    or ("ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "default")
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The contract check reads the traffic every other test recorded, so it runs last.
    # sort() is stable: everything else keeps its order.
    items.sort(key=lambda item: item.path.name == CONTRACT_TEST_FILE)


@pytest.fixture(scope="session")
def contract_trace_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every *.jsonl file here is checked against the API descriptions at the end.

    Tests that run an adapter with --trace-http should point it at a file in this directory.
    """
    return tmp_path_factory.mktemp("contract-traces")


@pytest.fixture(scope="session")
def contract_trace(contract_trace_dir: Path) -> TraceWriter:
    """The trace the emulators record their side of every exchange into."""
    return TraceWriter(contract_trace_dir / "emulators.jsonl")


@pytest.fixture
def github_emulator(contract_trace: TraceWriter) -> Iterator[GitHubEmulator]:
    with GitHubEmulator(trace=contract_trace) as emulator:
        yield emulator
    # A handler crash was answered with a 500; it is an emulator bug, not a test outcome.
    assert not emulator.errors, f"the GitHub emulator crashed: {emulator.errors!r}"


@pytest.fixture
def jira_emulator(contract_trace: TraceWriter) -> Iterator[JiraEmulator]:
    with JiraEmulator(trace=contract_trace) as emulator:
        yield emulator
    assert not emulator.errors, f"the Jira emulator crashed: {emulator.errors!r}"


@pytest.fixture
def trello_emulator(contract_trace: TraceWriter) -> Iterator[TrelloEmulator]:
    with TrelloEmulator(trace=contract_trace) as emulator:
        yield emulator
    assert not emulator.errors, f"the Trello emulator crashed: {emulator.errors!r}"
