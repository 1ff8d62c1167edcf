"""Conditional writes over HTTP: a user's record version as an entity tag.

``GET /users/{id}/export`` answers with ``ETag: "N"`` (N = the record version, 0
for a user who does not exist); a write that replaces the record
(``PUT /users/{id}``) must say which version it replaces with ``If-Match: "N"``
(or ``*``: whatever is stored). The engine checks the version in the same
transaction as the write (``VersionConflictError`` -> 412). Without ``If-Match``
the write is refused with 428, so a stale copy can never overwrite newer state
by accident.
"""

from __future__ import annotations

import re

from .errors import ApiError

IF_MATCH_RULE = (
    'the record version this write replaces, as GET /users/{user_id}/export\'s ETag ("N"; '
    '"0": the user must not exist), or * for whatever is stored'
)
_TAG = re.compile(r'\s*(?:W/)?"(\d{1,18})"\s*')


def version_tag(version: int) -> str:
    """The entity tag of a record version.

    >>> version_tag(3)
    '"3"'
    """
    return f'"{version}"'


def expected_version(if_match: str | None) -> int | None:
    """The version an ``If-Match`` header names; None for ``*``.

    >>> expected_version('"7"'), expected_version("*")
    (7, None)
    """
    if if_match is None:
        raise ApiError(
            428,
            "precondition_required",
            'send If-Match: "N" with the version you read (the ETag of '
            "GET /users/{user_id}/export), or If-Match: * to replace whatever is stored",
        )
    if if_match.strip() == "*":
        return None
    found = _TAG.fullmatch(if_match)
    if found is None:
        raise ApiError(
            400, "invalid_if_match", 'If-Match is one entity tag, "N" (a record version), or *'
        )
    return int(found.group(1))
