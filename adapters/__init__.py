"""One module per tool. Each speaks that tool's API and nothing else.

Imported as ``syncd.adapters`` (see pyproject.toml). Modules are imported only when a source
of their type is configured, so a broken optional dependency breaks only that source type.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncd.adapters.base import Adapter

# type name in config -> module under syncd.adapters
ADAPTER_MODULES: dict[str, str] = {
    "email": "email",
    "github": "github",
    "jira": "jira",
    "trello": "trello",
}


def adapter_class(kind: str) -> type[Adapter[Any]]:
    module = ADAPTER_MODULES.get(kind)
    if module is None:
        known = ", ".join(sorted(ADAPTER_MODULES))
        raise KeyError(f"unknown source type {kind!r} (known: {known})")
    cls: type[Adapter[Any]] = importlib.import_module(f"syncd.adapters.{module}").ADAPTER
    return cls
