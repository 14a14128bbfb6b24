"""Generate labextension/src/protocol_schema.ts from the comm protocol's JSON schema.

    python labextension/scripts/protocol_types.py          # rewrite the .ts file
    python labextension/scripts/protocol_types.py --check  # exit 1 if it is out of date

The schema (nimm_jupyter/jupyter/cells_protocol.schema.json) is the one definition of the
messages; this turns each object in its ``$defs`` into a TypeScript interface. It covers the
subset of JSON Schema the protocol uses (const, enum, type, items, $ref,
additionalProperties) and refuses anything else, so a schema change cannot be dropped silently.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "nimm_jupyter" / "jupyter" / "cells_protocol.schema.json"
OUTPUT = ROOT / "labextension" / "src" / "protocol_schema.ts"
_PRIMITIVES = {"string": "string", "integer": "number", "number": "number",
               "boolean": "boolean", "null": "null"}
_KNOWN = {"const", "enum", "type", "items", "$ref", "properties", "required",
          "additionalProperties", "title", "description", "minLength", "minItems", "minimum"}


def _literal(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


def _type(node: dict[str, Any], defs: dict[str, Any]) -> str:
    unknown = set(node) - _KNOWN
    if unknown:
        raise ValueError(f"schema keywords this generator does not translate: {sorted(unknown)}")
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        if target.get("type") == "object":
            return f"I{target['title']}"
        return target["title"] if "enum" in target else _type(target, defs)
    if "const" in node:
        return _literal(node["const"])
    if "enum" in node:
        return " | ".join(_literal(v) for v in node["enum"])
    kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
    if kinds == ["array"]:
        return f"{_type(node['items'], defs)}[]"
    return " | ".join(_PRIMITIVES[k] for k in kinds)


def _enum(node: dict[str, Any]) -> str:
    """A named enum: its type and the constant list of its values (``Role`` -> ``ROLES``)."""
    name, values = node["title"], ", ".join(_literal(v) for v in node["enum"])
    return (f"/** {node['description']} */\n"
            f"export type {name} = {' | '.join(_literal(v) for v in node['enum'])};\n"
            f"export const {name.upper()}S: ReadonlyArray<{name}> = [{values}];")


def _interface(node: dict[str, Any], defs: dict[str, Any]) -> str:
    lines = [f"/** {node['description']} */"] if "description" in node else []
    lines.append(f"export interface I{node['title']} {{")
    required = set(node.get("required", ()))
    for name, prop in node["properties"].items():
        optional = "" if name in required else "?"
        lines.append(f"  {name}{optional}: {_type(prop, defs)};")
    if node.get("additionalProperties") is True:
        lines.append("  [key: string]: unknown;")
    lines.append("}")
    return "\n".join(lines)


def render(schema: dict[str, Any]) -> str:
    """The TypeScript module for ``schema`` (deterministic: same schema, same bytes)."""
    defs = schema["$defs"]
    parts = [
        "// GENERATED from nimm_jupyter/jupyter/cells_protocol.schema.json by\n"
        "// labextension/scripts/protocol_types.py. Do not edit: change the schema, then run\n"
        "// `python labextension/scripts/protocol_types.py` (tests/test_cells_protocol.py checks).",
        f"/** Comm target name shared with the kernel. */\n"
        f"export const TARGET = {_literal(schema['x-comm-target'])};",
        f"/** {defs['version']['description']} */\n"
        f"export const PROTOCOL_VERSION = {_literal(defs['version']['const'])};",
    ]
    parts += [_enum(node) for node in defs.values() if "enum" in node and "title" in node]
    parts += [_interface(node, defs) for node in defs.values() if node.get("type") == "object"]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    text = render(json.loads(SCHEMA.read_text(encoding="utf-8")))
    if "--check" in argv:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is out of date; run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
