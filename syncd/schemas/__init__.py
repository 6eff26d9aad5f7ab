"""JSON Schemas (draft 2020-12) of every command's `--json` output, shipped in the package.

One file per command, named by its path ("ls", "config-check"), each carrying
`schema_version`. Within a version keys may be added, never renamed or removed; a change
that breaks a script raises the version. `syncd schema NAME` prints one.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

SCHEMA_VERSION = 1


def names() -> list[str]:
    return sorted(
        p.name.removesuffix(".json")
        for p in resources.files(__name__).iterdir()
        if p.name.endswith(".json")
    )


def load(name: str) -> dict[str, Any]:
    """The schema for the command named like "ls" or "config check"."""
    file = resources.files(__name__) / f"{name.replace(' ', '-')}.json"
    data: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    return data
