"""Quoting for what the deploy side prints for a person to copy or read: values never act on a shell or a terminal.

Public API:
    shell_word(text) -> str             one argument as bash reads it back, byte for byte
    shell_command(words) -> str         a command line of such words, for a person to copy
    visible(text) -> str                text for a message: every character a terminal would act on made visible

Why: a value from config.env or the environment (a resource group, a kubectl context, a path) that holds `$(...)`,
backticks or `;` and is printed raw inside a suggested command runs whatever it embeds when the command is pasted;
one that holds an escape character rewrites the terminal when it is printed. What `shell_word` prints is, pasted
into bash, exactly the original argument and nothing else:

    plain         when every character is one no shell treats specially: [A-Za-z0-9_./:,@+=%-]
    'single'      when the text is printable and holds no single quote (printable Unicode stays readable)
    $'ansi-c'     otherwise: a quote or backslash is escaped with a backslash, every character Python does not
                  call printable (C0 and C1 controls, DEL, line and paragraph separators, format characters
                  such as the bidirectional overrides, non-ASCII spaces) is written as the \\xHH escapes of
                  its UTF-8 bytes, and a byte that was not UTF-8 (read with surrogateescape) as \\xHH of
                  itself, so the escapes mean the same bytes whatever the locale of the shell that reads them.

scripts/common.sh has the same rules in bash (shell_word, with LC_ALL=C printf %q, which also escapes every byte
outside ASCII); tests/deploy/test_quoting.py checks both against bash itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_PLAIN = re.compile(r"[A-Za-z0-9_./:,@+=%-]+")
# Lone surrogates U+DC80..U+DCFF are the bytes 0x80..0xFF of a value that was not UTF-8 (surrogateescape).
_ESCAPED_BYTES = range(0xDC80, 0xDD00)


def shell_word(text: str) -> str:
    """One argument as bash reads it back exactly; never a character a terminal acts on (see the module)."""
    if _PLAIN.fullmatch(text):
        return text
    if not text:
        return "''"
    if text.isprintable() and "'" not in text:
        return f"'{text}'"
    return "$'" + "".join(_ansi_c(character) for character in text) + "'"


def shell_command(words: Iterable[str]) -> str:
    """A command line of `words`, each quoted by shell_word, for a person to copy."""
    return " ".join(shell_word(word) for word in words)


def visible(text: str) -> str:
    """Text for a message as it is when every character is printable (a newline and a tab included, since a
    message may be several lines); else each character that is not written as its escape, as in $'...'."""
    if all(character.isprintable() or character in "\n\t" for character in text):
        return text
    return "".join(
        character if character.isprintable() or character in "\n\t" else _escape(character) for character in text
    )


def _ansi_c(character: str) -> str:
    if character in "'\\":
        return "\\" + character
    if character.isprintable():
        return character
    return _escape(character)


def _escape(character: str) -> str:
    code = ord(character)
    if code in _ESCAPED_BYTES:
        return f"\\x{code - 0xDC00:02x}"
    return "".join(f"\\x{byte:02x}" for byte in character.encode("utf-8", "surrogatepass"))
