"""The exception tree: the module's drawing of it is the classes' hierarchy, and a request
error carries what the output's error record needs."""

from __future__ import annotations

import re

from batchrun import errors


def drawn_tree() -> dict[str, str | None]:
    """Each class the module docstring draws, and the class drawn above it."""
    assert errors.__doc__ is not None
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []  # (column of the name, name)
    for line in errors.__doc__.splitlines():
        match = re.match(r"^([ │├└─]*)([A-Z]\w+)(?:\s|$)", line)
        if match is None or not match[1]:  # the tree is indented; the prose around it is not
            continue
        column = len(match[1])
        while stack and stack[-1][0] >= column:
            stack.pop()
        parents[match[2]] = stack[-1][1] if stack else None
        stack.append((column, match[2]))
    return parents


def test_the_drawn_tree_is_the_class_hierarchy_and_names_every_class() -> None:
    drawn = drawn_tree()
    classes = {name: value for name, value in vars(errors).items()
               if isinstance(value, type) and issubclass(value, Exception) and value.__module__ == errors.__name__}
    assert sorted(drawn) == sorted(classes)
    assert {name: (classes[name].__bases__[0].__name__ if parent else None) for name, parent in drawn.items()} == drawn


def test_a_request_error_keeps_what_its_record_needs_and_a_retryable_one_its_wait() -> None:
    refused = errors.AuthRefused("forbidden", "no access", status_code=403, request_id="req_1", body={"error": {}})
    assert (refused.code, refused.message, str(refused), refused.status_code, refused.request_id, refused.body) == (
        "forbidden", "no access", "no access", 403, "req_1", {"error": {}})
    limited = errors.RateLimited("rate_limited", "slow down", retry_after=2.5, status_code=429)
    assert (limited.retry_after, limited.status_code) == (2.5, 429)
    assert errors.TransportError("timeout", "timed out").retry_after is None
