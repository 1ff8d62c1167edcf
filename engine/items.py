"""The catalog item: validation rules, the text that gets embedded, its hash.

Item ids are 1-256 characters from ``[A-Za-z0-9._:@~-]`` (URL-path safe, no
spaces or slashes), so an id can be used verbatim in a service route.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from .times import UtcTime

ITEM_ID_PATTERN = r"^[A-Za-z0-9._:@~-]{1,256}$"
_ITEM_ID_RE = re.compile(ITEM_ID_PATTERN)

MAX_TITLE_CHARS = 1_000
MAX_BODY_CHARS = 20_000
MAX_TAGS = 64
MAX_TAG_CHARS = 100
MAX_PROPERTIES_BYTES = 16 * 1024
# Levels of lists/objects a property value may nest (the properties object itself is
# level 0), as filters (``filters.MAX_DEPTH``): deeper values break JSON encoders
# and serializers, which recurse.
MAX_PROPERTY_DEPTH = 16
# Item fields a filter can address by name; properties may not shadow them.
RESERVED_PROPERTY_NAMES = ("id", "tags", "published_at")
_SEQUENCES = (list, tuple)
_CONTAINERS = (dict, list, tuple)


def is_valid_item_id(value: object) -> bool:
    return isinstance(value, str) and _ITEM_ID_RE.fullmatch(value) is not None


def _check_id(value: str) -> str:
    if not is_valid_item_id(value):
        raise ValueError("item id must be 1-256 characters from A-Z a-z 0-9 . _ : @ ~ -")
    return value


ItemId = Annotated[str, AfterValidator(_check_id)]


def nests_deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists/objects (dicts, lists, tuples) more than ``limit``
    levels deep.

    Level by level and never past ``limit``, so input nested 100 000 deep (or a
    dict that contains itself) is answered without recursion, before anything that
    recurses (``json.dumps``, pydantic's serializer) sees it. Other types are not
    walked: a JSON encoder stops at them with an error of its own.
    """
    level: list[Any] = [value]
    for _ in range(limit):
        inner: list[Any] = []
        for current in level:
            if isinstance(current, dict):
                inner.extend(current.values())
            elif isinstance(current, _SEQUENCES):
                inner.extend(current)
        if not inner:
            return False
        level = inner
    return any(isinstance(current, _CONTAINERS) for current in level)


def too_deep_properties(props: Mapping[str, Any]) -> list[str]:
    """Names of the properties whose value nests deeper than ``MAX_PROPERTY_DEPTH``
    (cheap for the usual scalar values: every decoded item goes through it)."""
    return [
        key
        for key, value in props.items()
        if isinstance(value, _CONTAINERS) and nests_deeper_than(value, MAX_PROPERTY_DEPTH)
    ]


def check_property_depth(props: dict[str, Any]) -> dict[str, Any]:
    """``props`` if no value nests too deep, else ``ValueError`` naming the properties.

    Also the service's request models use it (``Properties``): a request body is
    re-serialized before the engine sees it, and that recursion must not meet a
    value nested hundreds of levels deep.
    """
    deep = too_deep_properties(props)
    if deep:
        names = ", ".join(repr(k[:64]) for k in deep[:5])
        raise ValueError(f"lists/objects nested deeper than {MAX_PROPERTY_DEPTH} levels in {names}")
    return props


PROPERTIES_RULE = (
    f"JSON values, not embedded; lists/objects nested at most {MAX_PROPERTY_DEPTH} levels "
    f"deep, at most {MAX_PROPERTIES_BYTES} bytes as JSON"
)
# Property objects of requests, with the nesting checked without recursion.
Properties = Annotated[dict[str, Any], AfterValidator(check_property_depth)]


def _ints_fit(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if isinstance(value, dict):
        return all(_ints_fit(v) for v in value.values())
    if isinstance(value, list):
        return all(_ints_fit(v) for v in value)
    return True


class Item(BaseModel):
    """A catalog item. ``title``/``body``/``tags`` are embedded; ``properties`` are not."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: ItemId
    title: str = Field("", max_length=MAX_TITLE_CHARS)
    body: str = Field("", max_length=MAX_BODY_CHARS)
    tags: tuple[str, ...] = Field((), max_length=MAX_TAGS)
    properties: dict[str, Any] = Field(default_factory=dict)
    published_at: UtcTime | None = None

    @field_validator("tags")
    @classmethod
    def _tags_are_short_words(cls, tags: tuple[str, ...]) -> tuple[str, ...]:
        for tag in tags:
            if not tag.strip() or len(tag) > MAX_TAG_CHARS:
                raise ValueError(f"each tag must be 1-{MAX_TAG_CHARS} non-blank characters")
        return tags

    @field_validator("properties")
    @classmethod
    def _properties_are_small_json(cls, props: dict[str, Any]) -> dict[str, Any]:
        check_property_depth(props)  # first: the checks below recurse
        try:
            encoded = json.dumps(props, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"properties must be plain JSON: {exc}") from None
        if not _ints_fit(props):
            raise ValueError("property integers must fit in 64 bits")
        if len(encoded.encode()) > MAX_PROPERTIES_BYTES:
            raise ValueError(f"properties exceed {MAX_PROPERTIES_BYTES} bytes as JSON")
        for key in props:
            if not key or key.startswith("$") or key in RESERVED_PROPERTY_NAMES:
                raise ValueError(
                    f"property name {key!r} is empty, starts with '$' or is reserved "
                    f"({', '.join(RESERVED_PROPERTY_NAMES)})"
                )
        return props

    @model_validator(mode="after")
    def _has_text(self) -> Item:
        if not self.title.strip() and not self.body.strip():
            raise ValueError("an item needs a non-blank title or body to be embedded")
        return self

    def embedding_text(self) -> str:
        """The exact text given to the base model (tags help short titles)."""
        parts = [p.strip() for p in (self.title, self.body) if p.strip()]
        if self.tags:
            parts.append("Tags: " + ", ".join(self.tags))
        return ". ".join(parts)

    def content_hash(self) -> str:
        """Hash of the embedded text only: a change of properties never re-embeds."""
        return hashlib.sha256(self.embedding_text().encode()).hexdigest()[:32]


_ITEM_FIELDS = frozenset(Item.model_fields)
# what ``trusted_item`` leaves out of pydantic's model_construct must not matter to Item
assert not Item.__pydantic_post_init__ and not Item.__private_attributes__
assert all(f.alias is None and f.validation_alias is None for f in Item.model_fields.values())


def trusted_item(fields: dict[str, Any]) -> Item:
    """An ``Item`` from stored, already validated values of every field, without
    validation: what ``Item.model_construct`` builds, at less than half its cost (it
    looks for aliases and defaults field by field; every search and recommend result
    is decoded this way). ``fields`` becomes the item's own.

    >>> item = trusted_item({"id": "a", "title": "T", "body": "", "tags": (),
    ...                      "properties": {}, "published_at": None})
    >>> item == Item.model_construct(**item.__dict__), item.model_fields_set == _ITEM_FIELDS
    (True, True)
    """
    if fields.keys() != _ITEM_FIELDS:
        raise ValueError(f"an item's stored fields are {sorted(_ITEM_FIELDS)}")
    item = Item.__new__(Item)
    object.__setattr__(item, "__dict__", fields)
    object.__setattr__(item, "__pydantic_fields_set__", set(_ITEM_FIELDS))
    object.__setattr__(item, "__pydantic_extra__", None)
    object.__setattr__(item, "__pydantic_private__", None)
    return item
