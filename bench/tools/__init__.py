"""Tool types the benchmark can drive: one module each, registered here.

Adding a type (say Jira) means writing bench/tools/jira.py with a `Tool` and a `Kind`
subclass (see bench.tools.base) plus the `reference` and `key` functions, and adding one
line below. Modules are imported only when a layout uses their type.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from bench.tools.base import Kind, Tool, VirtualClock

# type name -> module under bench.tools
MODULES: dict[str, str] = {
    "github": "github",
    "jira": "jira",
    "trello": "trello",
}


def _module(kind: str) -> ModuleType:
    if kind not in MODULES:
        raise KeyError(f"the benchmark has no tool type {kind!r} (known: {', '.join(MODULES)})")
    return importlib.import_module(f"bench.tools.{MODULES[kind]}")


def tool(kind: str, clock: VirtualClock) -> Tool[Any]:
    return cast("Tool[Any]", _module(kind).TOOL(clock))


def kind(kind: str) -> Kind:
    return cast("Kind", _module(kind).KIND())


def reference(kind: str, source: int, number: int) -> str:
    """How a person would mention item `number` of `source` in another tool's text."""
    return cast(str, _module(kind).reference(source, number))


def key(kind: str, source: int, number: int) -> str:
    """The cross-reference key syncd derives from that mention (see syncd.crossref)."""
    return cast(str, _module(kind).key(source, number))
