"""Content identity: the sha256 of a canonical form of title and body.

The canonical form ignores what does not change the content: white space and line ends,
letter case, quote and dash styles, compatibility forms (NFKC).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib

import numpy as np

QUOTE_STYLES = {
    "‘": "'",
    "’": "'",
    "‚": "'",
    "‛": "'",
    "′": "'",
    "`": "'",
    "´": "'",
    "“": '"',
    "”": '"',
    "„": '"',
    "‟": '"',
    "″": '"',
    "«": '"',
    "»": '"',
    "‐": "-",
    "‑": "-",
    "‒": "-",
    "–": "-",
    "—": "-",
    "―": "-",
    "−": "-",
    "…": "...",
}
# str.translate would look every character up (about 0.1 µs each); a regex finds the few that change.
QUOTE_STYLE = re.compile("[" + "".join(map(re.escape, QUOTE_STYLES)) + "]")


def _plain_quotes(text: str) -> str:
    return QUOTE_STYLE.sub(lambda match: QUOTE_STYLES[match.group()], text)


def folded(text: str) -> str:
    """NFKC, plain quote and dash styles, case folded: the canonical form before white space is tidied."""
    if text.isascii():  # (a flag CPython keeps: no scan) NFKC leaves ASCII be; of the styles only ` is ASCII
        return text.replace("`", "'").lower()
    return _plain_quotes(unicodedata.normalize("NFKC", text)).casefold()


def canonical(text: str) -> str:
    # split() and the regex \s agree on what white space is; split and join is the faster of the two.
    return " ".join(folded(text).split())


def content_hash(title: str, body: str) -> str:
    digest = hashlib.sha256(f"{canonical(title)}\n{canonical(body)}".encode()).hexdigest()
    return f"sha256:{digest}"


# -- the similarity sketch: MinHash over word shingles, banded for LSH ---------------------------

SHINGLE_WORDS = 3
BANDS = 24
ROWS = 2  # hashes per band: a pair at Jaccard s shares a band with probability 1 - (1 - s^2)^24
HASHES = BANDS * ROWS
_PRIME = (1 << 61) - 1
_rng = np.random.default_rng(0x1E57)  # fixed: every worker on every machine must agree
_A = _rng.integers(1, _PRIME, HASHES, dtype=np.uint64)
_B = _rng.integers(0, _PRIME, HASHES, dtype=np.uint64)
WORD = re.compile(r"\w+")
# An ASCII text's words: every byte that is not a word character (\w on ASCII: letters, digits,
# underscore) made a space, then split. The same words as WORD.findall, about 4x faster.
_ASCII_NON_WORD_TO_SPACE = bytes(code if chr(code).isalnum() or code == ord("_") else ord(" ") for code in range(128))
_ASCII_NON_WORD_TO_SPACE += b" " * 128  # never met: only ASCII text takes this way
_EMPTY = np.full(HASHES, np.iinfo(np.uint32).max, dtype=np.uint32)


def shingle_words(body: str) -> list[bytes]:
    """The canonical words of a body, UTF-8 encoded: the runs of word characters of its folded form.
    Plain quote and dash styles are not word characters, so they change no word, but most text is
    ASCII once they are plain and then takes the faster way."""
    text = folded(body)
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_NON_WORD_TO_SPACE).split()
    return list(map(str.encode, WORD.findall(text)))


def shingle_hashes(body: str) -> np.ndarray:
    """64-bit hashes of the overlapping 3-word shingles of a body's canonical words, a repeated
    shingle as often as it occurs: MinHash takes minima, which repeats do not change, and np.unique
    cost a fifth of the signature."""
    # map() over a C function, no Python frame a word; a list first, which numpy takes faster than an iterator.
    hashed = np.array(list(map(zlib.crc32, shingle_words(body))), dtype=np.uint64)
    if len(hashed) < SHINGLE_WORDS:
        return hashed
    # Combining word hashes positionally makes "a b c" and "c b a" different shingles.
    return hashed[:-2] * np.uint64(0x9E3779B97F4A7C15) ^ hashed[1:-1] * np.uint64(0xC2B2AE3D27D4EB4F) ^ hashed[2:]


def minhash(body: str) -> np.ndarray:
    """HASHES 32-bit minima of as many hash functions over the shingles: the MinHash signature."""
    shingles = shingle_hashes(body)
    if shingles.size == 0:
        return _EMPTY.copy()
    with np.errstate(over="ignore"):
        mixed = _A[:, None] * shingles[None, :] + _B[:, None]  # wraps mod 2^64: a cheap universal hash
    return (mixed >> np.uint64(32)).min(axis=1).astype(np.uint32)


def band_keys(signature: np.ndarray) -> list[int]:
    """One 64-bit bucket per band: items sharing a bucket share all ROWS hashes of that band."""
    rows = signature.reshape(BANDS, ROWS).astype(np.uint64)
    with np.errstate(over="ignore"):
        mixed = rows[:, 0] * np.uint64(0x9E3779B97F4A7C15) ^ rows[:, 1] * np.uint64(0xBF58476D1CE4E5B9)
    return [int(value) for value in mixed]


def compact(signature: np.ndarray) -> bytes:
    """The low byte of each hash (b-bit MinHash): enough to estimate similarity, 48 bytes an item."""
    return (signature & 0xFF).astype(np.uint8).tobytes()


def estimated_similarity(a: bytes, b: bytes) -> float:
    """Jaccard estimated from two compact signatures, corrected for chance byte matches (1/256)."""
    matches = sum(x == y for x, y in zip(a, b)) / len(a)
    return max(0.0, (matches - 1 / 256) / (1 - 1 / 256))
