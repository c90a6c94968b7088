"""Content identity: the sha256 of a canonical form of title and body.

The canonical form ignores what does not change the content: white space and line ends,
letter case, quote and dash styles, compatibility forms (NFKC).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

QUOTES = str.maketrans({
    "‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "`": "'", "´": "'",
    "“": '"', "”": '"', "„": '"', "‟": '"', "″": '"', "«": '"', "»": '"',
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-", "−": "-",
    "…": "...",
})
WHITE_SPACE = re.compile(r"\s+")


def canonical(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).translate(QUOTES).casefold()
    return WHITE_SPACE.sub(" ", folded).strip()


def content_hash(title: str, body: str) -> str:
    digest = hashlib.sha256(f"{canonical(title)}\n{canonical(body)}".encode()).hexdigest()
    return f"sha256:{digest}"
