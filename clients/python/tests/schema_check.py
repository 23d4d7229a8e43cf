"""Reading ``docs/protocol.schema.json`` for the tests: the properties and
required fields of each frame and event alternative, and validators."""

from __future__ import annotations

import json
import typing
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from conftest import SCHEMA_PATH


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return loaded


def defs() -> dict[str, Any]:
    d: dict[str, Any] = schema()["$defs"]
    return d


def resolve(node: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(properties, required) of an object schema, following the ``$ref``s
    it is made of: ``allOf: [{"$ref": ...}]`` beside the properties (how
    ``snapshot`` and ``response`` are written), or a bare ``$ref``."""
    props = set(node.get("properties", {}))
    required = set(node.get("required", []))
    parts = list(node.get("allOf", []))
    if "$ref" in node:
        parts.append({"$ref": node["$ref"]})
    for part in parts:
        ref = part.get("$ref")
        p, r = resolve(defs()[ref.rsplit("/", 1)[-1]]) if ref else resolve(part)
        props |= p
        required |= r
    return props, required


def alternatives(def_name: str, tag: str) -> dict[str, dict[str, Any]]:
    """The ``oneOf`` alternatives of a tagged union, by tag value."""
    out = {}
    for alt in defs()[def_name]["oneOf"]:
        out[alt["properties"][tag]["const"]] = alt
    return out


def enum_values(def_name: str) -> set[Any]:
    node = defs()[def_name]
    if "enum" in node:
        return set(node["enum"])
    values: set[Any] = set()
    for alt in node["oneOf"]:
        if "enum" in alt:
            values |= set(alt["enum"])
        else:
            values.add(alt["const"])
    return values


def typed_dict_keys(td: Any) -> tuple[set[str], set[str]]:
    """(all keys, required keys) of a TypedDict."""
    required = set(td.__required_keys__)
    return required | set(td.__optional_keys__), required


def tag_of(td: Any, tag: str) -> str:
    hints = typing.get_type_hints(td)
    (value,) = typing.get_args(hints[tag])
    return str(value)


def validator(def_name: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": f"#/$defs/{def_name}", "$defs": defs()},
        format_checker=FormatChecker(),
    )
