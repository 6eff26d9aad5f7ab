"""Atlassian Document Format, the tree Jira Cloud (REST v3) writes descriptions and comments
in: its text read for cross-references and activity, and a handoff comment written as one.

Pure functions, no I/O. A document comes from anyone who can edit an issue, so it is walked
within a node budget and without recursion: a hostile tree costs bounded time and no stack.
"""

from __future__ import annotations

from typing import Any

from syncd.models import Comment

_ADF_NODES = 20_000  # nodes of one description read for cross-references
_NEWLINE = object()  # a block boundary while walking a document
_FENCE = object()  # the end of a code block
_CARDS = frozenset({"inlineCard", "blockCard", "embedCard"})
_INLINE = frozenset(
    {"text", "hardBreak", "mention", "emoji", "inlineCard", "date", "status", "mediaInline"}
)


def adf_text(doc: object, max_nodes: int = _ADF_NODES) -> str:
    """The text of an Atlassian Document Format tree, with its link targets, for read_references.

    Runs of text within a block are joined as written, since one reference can be split
    across differently styled runs; blocks are separated by newlines; every link target (a
    link mark's href, a smart-link card's url) is added on its own, so a link whose text
    differs from its target still counts. The walk is iterative, so nesting costs no stack,
    and stops after `max_nodes` nodes.
    """
    out: list[str] = []
    stack: list[object] = [doc]
    read = 0
    while stack and read < max_nodes:
        node = stack.pop()
        if node is _NEWLINE:
            out.append("\n")
            continue
        if node is _FENCE:
            out.append("\n```\n")
            continue
        if not isinstance(node, dict):
            continue
        read += 1
        kind = node.get("type")
        if kind == "text":
            text = node.get("text")
            if isinstance(text, str):
                out.append(text)
            marks = node.get("marks")
            for mark in marks[:20] if isinstance(marks, list) else ():
                if isinstance(mark, dict) and mark.get("type") == "link":
                    out.append(f" {_attr(mark, 'href')} ")
            continue
        if kind in _CARDS:
            out.append(f" {_attr(node, 'url')} ")
        content = node.get("content")
        if isinstance(content, list):
            block = kind not in _INLINE
            if block:
                stack.append(_NEWLINE)
            if kind == "codeBlock":
                # Fenced as Markdown would be, so nothing in code declares identity.
                out.append("\n```\n")
                stack.append(_FENCE)
            stack.extend(reversed(content[: max_nodes - read]))
            if block:
                stack.append(_NEWLINE)
    return "".join(out)


def _attr(node: dict[str, Any], name: str) -> str:
    attrs = node.get("attrs")
    value = attrs.get(name) if isinstance(attrs, dict) else None
    return value if isinstance(value, str) else ""


def comment_adf(comment: Comment) -> dict[str, Any]:
    """A handoff comment as an Atlassian Document: a paragraph each, the links as link
    marks, and the marker last, in code style (what lets a retry find the comment)."""

    def para(*nodes: dict[str, Any]) -> dict[str, Any]:
        return {"type": "paragraph", "content": list(nodes)}

    def text(value: str, **mark: Any) -> dict[str, Any]:
        node: dict[str, Any] = {"type": "text", "text": value}
        if mark:
            node["marks"] = [mark]
        return node

    content = [para(text(p)) for p in comment.paragraphs]
    if comment.links:
        nodes = [text("Also tracked in: ")]
        for i, (label, url) in enumerate(comment.links):
            if i:
                nodes.append(text(", "))
            nodes.append(text(label, type="link", attrs={"href": url}))
        content.append(para(*nodes))
    content.append(para(text(comment.marker, type="code")))
    return {"type": "doc", "version": 1, "content": content}
