"""bytes -> text: gzip (capped), byte-order marks, charset detection, mojibake repair, control characters."""

from __future__ import annotations

import codecs
import re
import zlib

import charset_normalizer
import ftfy

from shared.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
BINARY_SAMPLE_CHARS = 8192
BINARY_NOISE_RATIO = 0.1  # more replacement or control characters than this: not a text document
BOMS = (  # longest first: the UTF-32 LE mark begins with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Keep tab and line feed; every other C0/C1 control character (NUL included) is noise in a document.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Typographic quotes are content: ftfy must not straighten them. HTML entities are the HTML parser's job.
FTFY_CONFIG = ftfy.TextFixerConfig(uncurl_quotes=False, unescape_html=False, fix_character_width=False)


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress gzip data, refusing output over `limit` bytes before it is all in memory."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise InputError(f"corrupt gzip data ({exc})") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise InputError(f"decompressed content exceeds the {limit} byte limit")
    if not inflater.eof:
        raise InputError("truncated gzip data")
    return out


def unwrap(name: str, data: bytes, limit: int) -> tuple[str, bytes]:
    """Strip a .gz layer (by name or by magic bytes); returns the inner name and bytes."""
    if name.lower().endswith(".gz"):
        return name[:-3], gunzip(data, limit)
    if data.startswith(GZIP_MAGIC):
        return name, gunzip(data, limit)
    return name, data


def _bom_decode(data: bytes) -> str | None:
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    return None


def _guess_decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(data).best()
    if best is not None:
        return str(best)
    return data.decode("utf-8", errors="replace")


def _looks_binary(text: str) -> bool:
    sample = text[:BINARY_SAMPLE_CHARS]
    noise = sum(1 for char in sample if char == "\ufffd" or (char < " " and char not in "\n\r\t\f"))
    return bool(sample) and noise / len(sample) > BINARY_NOISE_RATIO


def decode_text(data: bytes) -> str:
    """Bytes in any common encoding -> clean Unicode text with \\n line ends."""
    text = _bom_decode(data)
    if text is None:
        text = _guess_decode(data)
    if _looks_binary(text):
        raise InputError("binary content, not text")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = ftfy.fix_text(text, FTFY_CONFIG)
    return CONTROL_CHARS.sub("", text)
