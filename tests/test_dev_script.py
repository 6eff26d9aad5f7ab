"""scripts/dev, the first thing a new user runs: `scripts/dev demo` installs only what the
demo needs, and prints no escape codes where nobody sees colours."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_dev_demo_installs_only_what_the_demo_needs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "bench-results*"
        ),
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "NO_COLOR")}
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run(
        [str(src / "scripts" / "dev"), "demo", "--no-email"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "==> installing syncd[demo] into .venv" in result.stderr
    # Written to pipes: no bold, no escape codes anywhere.
    assert "\x1b" not in result.stderr + result.stdout
    listed = subprocess.run(
        [str(src / ".venv" / "bin" / "pip"), "list", "--format", "freeze"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.lower()
    installed = {line.split("==")[0] for line in listed.splitlines()}
    assert "aiosmtpd" in installed
    for tool in ("mypy", "ruff", "hypothesis", "openapi-core", "pytest", "jsonschema"):
        assert tool not in installed, f"{tool} is not needed by the demo"
