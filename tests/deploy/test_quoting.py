"""The quoting helpers: bash's shell_word (scripts/common.sh) and Python's deploy/quoting.py.

Whatever a value holds, what either prints is read back by bash as exactly the value, byte for byte, runs
nothing, and holds no character a terminal acts on: no C0 control, no DEL, no C1 control (U+0080..U+009F as
UTF-8). The values cover shell syntax, every ASCII control but NUL (which no argument can hold), every code point
U+0080..U+00FF, raw bytes 0x80..0xFF that are not UTF-8, other scripts, bidirectional overrides and separators.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from deploy.quoting import shell_command, shell_word, visible

from helpers.deploy_harness import REPO

CANARY = "/tmp/quoting-canary-never-created"
HOSTILE = [
    "plain-word_1.2:3,4@5+6=7%8/9",
    "",
    " ",
    "rg(prod)",
    f"$(touch {CANARY})",
    f"`touch {CANARY}`",
    f"a; touch {CANARY} && echo | cat > x < y # z",
    'it\'s "quoted" \\ back\\slash',
    "$HOME ${IFS} $'\\n' !! ~ * ? [a] {a,b}",
    "|",
    "-n",
    "\x1b[31mred\x1b[0m \x1b]0;title\x07",
    "".join(chr(code) for code in range(1, 32)) + "\x7f",
    "".join(chr(code) for code in range(0x80, 0x100)),  # U+0080..U+00FF as characters (C1 controls, NBSP, é...)
    "csi\u009b31m next\u0085line nbsp\u00a0é",
    "队列-😀-ü-\u202eevil\u202c-\u2028-\u2029-\ufeff",
    "bytes-" + "".join(chr(0xDC00 + byte) for byte in range(0x80, 0x100)),  # raw bytes 0x80..0xFF (not UTF-8)
    "mixed '\udcff' \x1b and ü",
]


def as_bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def bash_reads(words: str) -> list[bytes]:
    """The arguments bash reads from printed words (each written NUL-terminated; nothing else runs)."""
    completed = subprocess.run(
        ["bash", "-c", f"set -- {words}; printf '%s\\0' \"$@\""],
        capture_output=True,
        check=True,
        env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"},
    )
    return completed.stdout.split(b"\0")[:-1]


def terminal_controls(printed: bytes) -> list[bytes]:
    """The bytes of `printed` a terminal would act on: C0 controls, DEL, and C1 controls in UTF-8."""
    found = [bytes([byte]) for byte in printed if byte < 0x20 or byte == 0x7F]
    found += [
        printed[index : index + 2]
        for index in range(len(printed) - 1)
        if printed[index] == 0xC2 and 0x80 <= printed[index + 1] <= 0x9F
    ]
    return found


def bash_shell_word(value: str) -> bytes:
    completed = subprocess.run(
        ["bash", "-c", 'source "$0/scripts/common.sh" && shell_word "$1"', str(REPO), as_bytes(value)],
        capture_output=True,
        check=True,
        env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"},
    )
    return completed.stdout


@pytest.mark.parametrize("value", HOSTILE, ids=lambda value: ascii(value)[:30])
def test_bash_shell_word_is_read_back_exactly_and_never_controls_the_terminal(value: str) -> None:
    printed = bash_shell_word(value)
    assert terminal_controls(printed) == []
    assert printed.isascii(), "under LC_ALL=C every byte outside ASCII is an escape"
    assert bash_reads(printed.decode("ascii")) == [as_bytes(value)]
    assert not Path(CANARY).exists()


@pytest.mark.parametrize("value", HOSTILE, ids=lambda value: ascii(value)[:30])
def test_python_shell_word_is_read_back_exactly_and_never_controls_the_terminal(value: str) -> None:
    printed = shell_word(value)
    assert terminal_controls(as_bytes(printed)) == []
    assert all(character.isprintable() for character in printed)
    assert bash_reads(printed) == [as_bytes(value)]
    assert not Path(CANARY).exists()


def test_python_keeps_printable_text_readable_and_plain_words_plain() -> None:
    assert shell_word("rg-test") == "rg-test"
    assert shell_word("rg(prod)-ü") == "'rg(prod)-ü'"
    assert shell_word("") == "''"
    assert shell_word("a\x1bb") == "$'a\\x1bb'"
    assert shell_word("\u0085") == "$'\\xc2\\x85'", "a code point U+0080..U+00FF is its UTF-8 bytes"
    assert shell_word("\udc85") == "$'\\x85'", "a byte that was not UTF-8 is that byte"
    assert shell_command(["az", "aks", "--resource-group", "rg $(x)"]) == "az aks --resource-group 'rg $(x)'"


def test_the_whole_command_line_is_read_back_word_for_word() -> None:
    assert bash_reads(shell_command(HOSTILE)) == [as_bytes(value) for value in HOSTILE]
    printed = subprocess.run(
        ["bash", "-c", 'source "$0/scripts/common.sh" && command_line "${@:1}"', str(REPO), *map(as_bytes, HOSTILE)],
        capture_output=True,
        check=True,
        env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"},
    ).stdout
    assert terminal_controls(printed) == []
    assert bash_reads(printed.decode("ascii")) == [as_bytes(value) for value in HOSTILE]
    assert not Path(CANARY).exists()


def test_visible_text_keeps_lines_and_shows_every_control() -> None:
    message = "line one\n\tline two \x1b[31m csi\u009b ü 队 \udcff"
    shown = visible(message)
    assert shown.startswith("line one\n\tline two \\x1b[31m csi\\xc2\\x9b ü 队 \\xff")
    assert terminal_controls(as_bytes(shown).replace(b"\n", b"").replace(b"\t", b"")) == []
    bash = subprocess.run(
        ["bash", "-c", 'source "$0/scripts/common.sh" && visible_text "$1"', str(REPO), as_bytes(message)],
        capture_output=True,
        check=True,
    ).stdout
    assert bash == as_bytes("line one\n\tline two ?[31m csi? ü 队 \udcff")
