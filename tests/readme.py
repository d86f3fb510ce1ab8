"""The README's examples, read as a newcomer runs them.

Every block fenced as ``sh`` is a step: together, in order, they are one shell session
that starts in a checkout where ``make up`` runs (tests/e2e/test_readme.py runs it).
Blocks fenced otherwise (``console``, ``json``, ``js``, ``text``) are shown, not run. Each
``curl`` of the session answers 2xx, or the status the ``# → NNN`` comment line right
after its command names.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.support import ROOT

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\S*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
EXPECTED = re.compile(r"#\s*→\s*(\d{3})\b")
# What ends a command (outside quotes): a pipe, the end of a $( ... ), a list, a newline.
PUNCTUATION = "|);&\n"


def readme_text(path: Path = README) -> str:
    return path.read_text()


def sh_blocks(text: str) -> list[str]:
    """The ``sh`` blocks, in order."""
    return [body for kind, body in FENCE.findall(text) if kind == "sh"]


def session(text: str) -> str:
    """The shell session the README's ``sh`` blocks make, in order."""
    return "".join(sh_blocks(text))


@dataclass(frozen=True)
class Curl:
    """One curl command of the session: its method, URL as written, and the status its
    ``# → NNN`` line expects (None: any 2xx)."""

    method: str
    url: str
    expected: int | None
    line: int  # of the session, 1-based, where it starts


def _command_words(script: str, start: int) -> list[str]:
    """The words of the command that starts at ``start`` (quotes removed)."""
    lexer = shlex.shlex(script[start:], posix=True, punctuation_chars=PUNCTUATION)
    lexer.whitespace = " \t"
    lexer.whitespace_split = True
    lexer.commenters = ""
    words: list[str] = []
    while True:
        token = lexer.get_token()
        # A run of punctuation is one token ("\n\n", ")\n"): any of them ends the command.
        if token is None or token == lexer.eof or set(token) <= set(PUNCTUATION):
            return words
        words.append(token)


def curls(script: str) -> list[Curl]:
    """Every curl command of ``script``, in the order a shell runs them."""
    joined = script.replace("\\\n", " ")  # continuation lines, joined
    lines = joined.split("\n")
    found = []
    for match in re.finditer(r"(?<![\w-])curl\s", joined):
        words = _command_words(joined, match.start())
        method = "GET"
        url = ""
        for i, word in enumerate(words[1:], start=1):
            if word in ("-X", "--request"):
                method = words[i + 1]
            elif word in ("-d", "--data", "--data-raw") and method == "GET":
                method = "POST"
            elif word.startswith(("$JOBYARD_URL", "http://", "https://")) and not url:
                url = word
        assert url, f"a curl without a URL: {' '.join(words)}"
        first = joined.count("\n", 0, match.start())
        # The line after the command's last one (a quoted argument may span lines).
        after = first + sum(word.count("\n") for word in words) + 1
        expected = EXPECTED.match(lines[after].strip()) if after < len(lines) else None
        found.append(Curl(method, url, int(expected.group(1)) if expected else None, first + 1))
    return found
