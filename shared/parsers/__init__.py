"""One parser per format behind one interface: parse(text, meta) -> list[ParsedItem].

The registry picks a parser by the input's extension, and each parser confirms by sniffing
the content; anything else is a failure `unsupported format`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from shared.errors import InputError
from shared.parsers import text
from shared.parsers.model import ParsedItem

Parser = Callable[[str], list[ParsedItem]]


@dataclass(frozen=True)
class Format:
    name: str
    parse: Parser


FORMATS_BY_EXTENSION: dict[str, Format] = {
    ".txt": Format("text", text.parse),
}


def format_for(name: str) -> Format:
    """The format of a file name, or InputError('unsupported format')."""
    suffix = PurePosixPath(name).suffix.lower()
    found = FORMATS_BY_EXTENSION.get(suffix)
    if found is None:
        raise InputError("unsupported format")
    return found


__all__ = ["Format", "ParsedItem", "format_for"]
