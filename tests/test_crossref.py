from __future__ import annotations

import time

import pytest

from syncd.crossref import MAX_KEYS, MAX_SCAN, extract_keys, github_issue_keys, github_key


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        # GitHub short form; owner and repo lower-cased, punctuation around it ignored
        ("see acme/api#12", ["github:acme/api#12"]),
        ("(Acme/API#12).", ["github:acme/api#12"]),
        ("fixes my-org/repo.name_2#7", ["github:my-org/repo.name_2#7"]),
        # GitHub issue URLs on github.com and on an Enterprise host (with a port)
        ("https://github.com/Acme/Api/issues/12", ["github:acme/api#12"]),
        ("https://github.com/acme/api/issues/12#issuecomment-99", ["github:acme/api#12"]),
        ("https://ghe.example.com:8443/ops/infra/issues/3", ["github:ops/infra#3"]),
        ("http://ghe.internal/ops/infra/issues/3/", ["github:ops/infra#3"]),
        # the URL and the short form of one issue are one key
        ("acme/api#12 and https://github.com/acme/api/issues/12", ["github:acme/api#12"]),
        # not GitHub references: a URL fragment, a pull request, issue 0, trailing letters
        ("https://example.com/a/b#3", []),
        ("https://github.com/acme/api/pull/5", []),
        ("acme/api#0", []),
        ("acme/api#12abc", []),
        ("acme/api#1234567890", []),
        ("-bad/api#1", []),
        # Jira: bare keys, keys inside branch names, /browse/ URLs (any case there)
        ("OPS-7 needs a look", ["jira:OPS-7"]),
        ("branch feature/OPS-7-fix-login", ["jira:OPS-7"]),
        ("https://acme.atlassian.net/browse/OPS-7", ["jira:OPS-7"]),
        ("https://jira.acme.test/browse/ops-9?focusedId=1", ["jira:OPS-9"]),
        ("AB_1-3 ABCDEFGHIJ-4", ["jira:AB_1-3", "jira:ABCDEFGHIJ-4"]),
        # project keys longer than 10 characters exist (Apache StreamPipes)
        ("STREAMPIPES-651", ["jira:STREAMPIPES-651"]),
        ("OPS-007", ["jira:OPS-7"]),
        # not Jira keys: lower case, one letter, over 50 characters, embedded, REQ, zero,
        # and look-alikes from prose, standards and logs
        ("ops-7", []),
        ("A-1", []),
        ("A" * 51 + "-1", []),
        ("UTF-8 ISO-8859-1 SHA-256 CVE-2021-44228 RFC-7231 GPT-4 ORA-00942 KIP-4 PROJ-123", []),
        ("xOPS-7 OPS-7x OPS-7_1", []),
        ("https://acme.atlassian.net/browse/REQ-5", []),
        ("OPS-0", []),
        # Trello card links, with or without the slug; short links keep their case
        ("https://trello.com/c/AbCd1234", ["trello:AbCd1234"]),
        ("https://trello.com/c/AbCd1234/42-fix-the-login", ["trello:AbCd1234"]),
        ("https://www.trello.com/c/zzZZ9999/", ["trello:zzZZ9999"]),
        ("https://trello.com/c/AbCd12345", []),
        ("https://trello.com/b/AbCd1234/board", []),
        # ledger ids
        ("[REQ-42] printer on fire", ["req:42"]),
        ("re: req-42", ["req:42"]),
        ("REQ-0 freq-3", []),
        # order of first appearance, duplicates dropped
        (
            "REQ-1, OPS-2, acme/api#3, https://trello.com/c/AbCd1234, OPS-2, REQ-1",
            ["req:1", "jira:OPS-2", "github:acme/api#3", "trello:AbCd1234"],
        ),
        ("", []),
    ],
)
def test_extract_keys(text: str, keys: list[str]) -> None:
    assert list(extract_keys(text)) == keys


def test_keys_from_several_texts_keep_order_and_skip_none() -> None:
    assert extract_keys("OPS-1", None, "acme/api#2 OPS-1") == ("jira:OPS-1", "github:acme/api#2")


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        # a key just inside the scan limit is found; one just beyond it is not
        (("x" * (MAX_SCAN - 10) + " OPS-7",), ("jira:OPS-7",)),
        (("x" * MAX_SCAN + " OPS-7",), ()),
        # the limit is shared by all the texts of one item
        (("x" * MAX_SCAN, "OPS-7"), ()),
    ],
)
def test_scan_is_bounded(texts: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert extract_keys(*texts) == expected


def test_number_of_keys_is_bounded() -> None:
    text = " ".join(f"OPS-{n}" for n in range(1, 500))
    keys = extract_keys(text)
    assert len(keys) == MAX_KEYS
    assert keys[0] == "jira:OPS-1"
    assert keys[-1] == f"jira:OPS-{MAX_KEYS}"


@pytest.mark.parametrize(
    "hostile",
    [
        "https://" + "a." * 40000,
        "a/" * 40000 + "#",
        "A" * 70000 + "-",
        ("https://github.com/" + "a" * 39 + "/") * 2000,
    ],
)
def test_hostile_text_is_scanned_quickly(hostile: str) -> None:
    started = time.monotonic()
    extract_keys(hostile)
    assert time.monotonic() - started < 2.0


def test_github_issue_keys() -> None:
    assert github_key("Acme/API", 12) == "github:acme/api#12"
    assert github_issue_keys("Acme/API", 12) == ("github:acme/api#12",)
    # the key an issue has for itself is the key a mention of it produces
    assert extract_keys("https://github.com/Acme/API/issues/12") == github_issue_keys(
        "acme/api", 12
    )
