"""Known errors in the vendors' published API descriptions, corrected for the contract check.

Each erratum is narrow, names its evidence, and applies only while the published description
still has the error: once the shared copy is corrected, it is reported as no longer needed
and the check runs on the shared files as they are. The emulators stay faithful to the real
APIs; the descriptions are what is wrong here, and these are reported for correction.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Spec = dict[str, Any]


@dataclass(frozen=True)
class Erratum:
    file: str
    what: str
    evidence: str
    applies: Callable[[Spec], bool]
    fix: Callable[[Spec], None]


def _schemas(spec: Spec) -> dict[str, Any]:
    schemas: dict[str, Any] = spec["components"]["schemas"]
    return schemas


_TRELLO_ID = {"type": "string", "pattern": "^[0-9a-fA-F]{24}$", "nullable": True}
# Properties declared as {"$ref": TrelloID, "nullable": true}: OpenAPI 3.0 ignores siblings
# of $ref, so the null the description means to allow is rejected.
_NULLABLE_REF_IDS = [
    ("Action", ("memberCreator", "idMemberReferrer")),
]


def _prop(spec: Spec, schema: str, path: tuple[str, ...]) -> dict[str, Any]:
    node: dict[str, Any] = _schemas(spec)[schema]
    for name in path:
        node = node["properties"][name]
    return node


def _set_prop(spec: Spec, schema: str, path: tuple[str, ...], value: dict[str, Any]) -> None:
    node: dict[str, Any] = _schemas(spec)[schema]
    for name in path[:-1]:
        node = node["properties"][name]
    node["properties"][path[-1]] = value


def _remotelink_ok(spec: Spec) -> dict[str, Any]:
    get = spec["paths"]["/rest/api/3/issue/{issueIdOrKey}/remotelink"]["get"]
    schema: dict[str, Any] = get["responses"]["200"]["content"]["application/json"]
    return schema


ERRATA = [
    Erratum(
        "jira-cloud-v3.json",
        "GET /rest/api/3/issue/{key}/remotelink answers one RemoteIssueLink",
        "the operation answers every remote link of the issue, and its own example in the "
        "description is a JSON array of RemoteIssueLink objects",
        lambda s: _remotelink_ok(s)["schema"].get("type") != "array",
        lambda s: _remotelink_ok(s).update(
            schema={"type": "array", "items": _remotelink_ok(s)["schema"]}
        ),
    ),
    Erratum(
        "jira-cloud-v3.json",
        "Comment.created and Comment.updated are declared RFC 3339 date-time",
        "Jira writes yyyy-MM-dd'T'HH:mm:ss.SSSZ (offset +0000, no colon), as for changelogs; "
        "the description's own comment examples show 2021-01-17T12:34:00.000+0000",
        lambda s: _prop(s, "Comment", ("created",)).get("format") == "date-time",
        lambda s: [_prop(s, "Comment", (n,)).pop("format", None) for n in ("created", "updated")],
    ),
    Erratum(
        "trello.json",
        "nullable beside $ref (Action.memberCreator.idMemberReferrer)",
        "OpenAPI 3.0 ignores the siblings of $ref, so the null these ids take when unset is "
        "rejected although the description marks them nullable",
        lambda s: any("$ref" in _prop(s, sch, p) for sch, p in _NULLABLE_REF_IDS),
        lambda s: [_set_prop(s, sch, p, dict(_TRELLO_ID)) for sch, p in _NULLABLE_REF_IDS],
    ),
    Erratum(
        "trello.json",
        "Card.labels: items declared as label ids",
        "a card's labels field holds Label objects (the description's own Label schema: id, "
        "idBoard, name, color); the ids alone are the separate idLabels field",
        lambda s: "$ref" not in _prop(s, "Card", ("labels",)).get("items", {}),
        lambda s: _set_prop(
            s,
            "Card",
            ("labels",),
            {"type": "array", "items": {"$ref": "#/components/schemas/Label"}},
        ),
    ),
]


def corrected_checker(shared: Path, into: Path) -> tuple[Path, list[str]]:
    """A copy of the checker beside corrected copies of the descriptions, and the errata
    that were applied (each with its evidence)."""
    contract = into / "contract"
    shutil.copytree(shared / "contract", contract)
    applied = []
    for name in sorted({e.file for e in ERRATA}):
        path = contract / "openapi" / name
        spec = json.loads(path.read_text())
        for e in (e for e in ERRATA if e.file == name):
            if e.applies(spec):
                e.fix(spec)
                applied.append(f"{name}: {e.what} ({e.evidence})")
        path.write_text(json.dumps(spec))
    return contract / "check_traffic.py", applied
