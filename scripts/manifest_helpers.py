"""Small, dependency-free helpers for generate-k8s-manifests.sh and source_config.sh.

They exist because bash cannot do these few things safely or portably:

  yaml-string                read a value from stdin and print it as a YAML double-quoted scalar
                             that every YAML parser (Go's in kubectl, PyYAML) reads back byte-exact
  grace-period SECONDS       print terminationGracePeriodSeconds for a worker whose graceful
                             shutdown takes SECONDS: the next whole second plus a margin
  quantity-le REQUEST LIMIT  exit 0 when the Kubernetes quantity REQUEST is at most LIMIT, else 1
  docker-config              read server, username, password and email (NUL-separated) from stdin
                             and print a .dockerconfigjson document; secrets never touch argv
  checksum FILE...           print one SHA-256 over the files' names and contents
  yaml-unsafe                read NAME=VALUE pairs (NUL-separated) from stdin and print one line
                             for each value holding a character kubectl cannot write as YAML
  not-text                   read NAME=VALUE pairs (NUL-separated) from stdin and print one line
                             for each value holding bytes that are not UTF-8 text

No command reads configuration: values arrive as arguments (never secrets) or on stdin.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import sys
from decimal import Decimal
from pathlib import Path

GRACE_MARGIN_SECONDS = 15

# `kubectl create configmap -o yaml` fails on these (DEL, C1 controls, U+FFFE, U+FFFF), except
# U+0085 (NEL), which it silently turns into a space: none can reach a ConfigMap intact.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\ufffe\uffff]")

_QUANTITY = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
_SUFFIX_FACTORS = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def yaml_string(value: str) -> str:
    """A double-quoted YAML scalar: printable ASCII as is, everything else escaped.

    Escaping every non-ASCII character (with \\U for those outside the BMP, never surrogate
    pairs, which Go's YAML parser rejects) keeps line-break look-alikes such as U+2028 and
    U+0085 from being folded by a parser.
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


def grace_period(shutdown_seconds: str) -> int:
    return math.ceil(float(shutdown_seconds)) + GRACE_MARGIN_SECONDS


def quantity(text: str) -> Decimal:
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    return Decimal(match["number"]) * _SUFFIX_FACTORS[match["suffix"]]


def docker_config(fields: list[str]) -> str:
    server, username, password, email = fields
    entry = {
        "username": username,
        "password": password,
        "auth": base64.b64encode(f"{username}:{password}".encode()).decode(),
    }
    if email:
        entry["email"] = email
    return json.dumps({"auths": {server: entry}}, ensure_ascii=False)


def checksum(paths: list[str]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode() + b"\0")
        digest.update(Path(path).read_bytes() + b"\0")
    return digest.hexdigest()


def yaml_unsafe(pairs: list[str]) -> list[str]:
    problems = []
    for pair in pairs:
        name, _, value = pair.partition("=")
        match = _YAML_UNSAFE.search(value)
        if match:
            problems.append(
                f"{name}: contains the control character U+{ord(match.group()):04X}, which kubectl cannot "
                "put into a ConfigMap unchanged; remove it"
            )
    return problems


def not_text(pairs: list[str]) -> list[str]:
    problems = []
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            problems.append(f"{name}: holds bytes that are not UTF-8 text; write the value in UTF-8")
    return problems


def _stdin_pairs() -> list[str]:
    """NUL-separated NAME=VALUE pairs from stdin; bytes that are not UTF-8 arrive as lone surrogates."""
    return [pair for pair in sys.stdin.buffer.read().decode("utf-8", "surrogateescape").split("\0") if pair]


def _main(arguments: list[str]) -> int:
    command, rest = (arguments[0], arguments[1:]) if arguments else ("", [])
    if command == "yaml-string" and not rest:
        print(yaml_string(sys.stdin.buffer.read().decode()))
    elif command == "grace-period" and len(rest) == 1:
        print(grace_period(rest[0]))
    elif command == "quantity-le" and len(rest) == 2:
        return 0 if quantity(rest[0]) <= quantity(rest[1]) else 1
    elif command == "docker-config" and not rest:
        fields = sys.stdin.buffer.read().decode().split("\0")
        if len(fields) != 4:
            print("docker-config: expected server, username, password and email on stdin", file=sys.stderr)
            return 2
        sys.stdout.write(docker_config(fields))
    elif command == "checksum" and rest:
        print(checksum(rest))
    elif command == "yaml-unsafe" and not rest:
        for problem in yaml_unsafe(_stdin_pairs()):  # bytes that are not UTF-8: config.py check says so
            print(problem)
    elif command == "not-text" and not rest:
        for problem in not_text(_stdin_pairs()):
            print(problem)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
