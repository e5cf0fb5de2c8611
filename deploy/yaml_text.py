"""The one YAML writer of the deploy side: manifests and the alert rules file are data, written by `to_yaml`.

Public API:
    to_yaml(document) -> str     # block-style YAML of dicts, lists, strings, ints and booleans
    yaml_string(value) -> str    # one double-quoted scalar

Every string is a double-quoted scalar with everything outside printable ASCII escaped, which every YAML
parser (Go's in kubectl and the API server, PyYAML) reads back byte-exact, so no value can change the
document's structure, whatever it holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_YAML_WORDS = frozenset("y n yes no on off true false null ~".split())
_PLAIN_KEY = re.compile(r"[A-Za-z_.][A-Za-z0-9_./-]*")


def to_yaml(document: Any) -> str:
    """A document as block-style YAML; see yaml_string for how every string is written."""
    return "".join(line + "\n" for line in _block(document, 0))


def yaml_string(value: str) -> str:
    """A double-quoted YAML scalar: printable ASCII as is, everything else escaped.

    Escaping every non-ASCII character (with \\U for those outside the BMP, never surrogate pairs,
    which Go's YAML parser rejects) keeps line-break look-alikes such as U+2028 and U+0085 from
    being folded by a parser.
    """
    parts = []
    for character in value:
        code = ord(character)
        if character in '"\\':
            parts.append("\\" + character)
        elif 0x20 <= code < 0x7F:
            parts.append(character)
        elif code <= 0xFFFF:
            parts.append(f"\\u{code:04x}")
        else:
            parts.append(f"\\U{code:08x}")
    return '"' + "".join(parts) + '"'


def _block(value: Mapping | list, indent: int) -> list[str]:
    pad = " " * indent
    lines = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, Mapping | list) and item:
                lines.append(f"{pad}{_key(key)}:")
                lines.extend(_block(item, indent + 2))
            else:
                lines.append(f"{pad}{_key(key)}: {_scalar(item)}")
    else:
        for item in value:
            if isinstance(item, Mapping | list) and item:
                first, *rest = _block(item, indent + 2)
                lines.append(f"{pad}- {first.lstrip()}")
                lines.extend(rest)
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    return lines


def _key(key: str) -> str:
    return key if _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML_WORDS else yaml_string(key)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return yaml_string(value)
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list):
        return "[]"
    raise TypeError(f"no YAML for {type(value).__name__}")
