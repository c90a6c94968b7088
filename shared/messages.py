"""The wire format: a Batch of RawInputs, plain JSON, the input's bytes compressed and base64-encoded.

One message carries a list of inputs so that a burst can be packed without changing the format.
Each input carries its own `arrival_id`, chosen by whoever saw it arrive: delivering the message
twice repeats the same arrival, which the store records once.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime
from collections.abc import Callable, Iterable, Iterator
from typing import Literal, TypeVar

from pydantic import BaseModel, Field
from zlib_ng import zlib_ng

WIRE_VERSION = 1
# zlib-ng (the maintained, SIMD rewrite of zlib) at level 2: a 2.5 KB article in about 26 µs, where
# zlib's fastest level took 33-77 µs and made it larger. The watcher pays it on every file of a burst,
# the fetcher on every feed entry. Its output is a plain zlib stream: any zlib reader takes it, and
# the messages and blobs zlib wrote before read as ever.
COMPRESS_LEVEL = 2


def compress(payload: bytes) -> bytes:
    """An input's bytes as they travel and are kept: a zlib stream."""
    return zlib_ng.compress(payload, COMPRESS_LEVEL)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_arrival_id(ref: str, sha256: str) -> str:
    """A file's arrival is its path and content: the same file sent again is the same arrival."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"file:{ref}:{sha256}").hex


class RawInput(BaseModel):
    kind: Literal["file", "feed"]
    ref: str = Field(description="Path relative to the seeds folder (or as given to submit), or the feed URL")
    entry_id: str | None = None
    name: str | None = Field(None, description="The name whose extension picks the format; unset: ref")
    arrival_id: str
    sha256: str
    size: int
    mtime: float | None = None
    seen_at: datetime
    data: str = Field(description="zlib-compressed bytes, base64")

    @classmethod
    def from_bytes(
        cls,
        payload: bytes,
        *,
        kind: str,
        ref: str,
        arrival_id: str | None = None,
        entry_id: str | None = None,
        mtime: float | None = None,
        name: str | None = None,
        sha256: str | None = None,
    ) -> RawInput:
        """`sha256`: the payload's digest when the caller has computed it already."""
        digest = sha256 or sha256_hex(payload)
        # Every field is made here, typed as the model says: validating them again is a fifth of
        # the watcher's cost a file under a burst. Messages read from the queue are still validated.
        return cls.model_construct(
            kind=kind,
            ref=ref,
            entry_id=entry_id,
            name=name,
            arrival_id=arrival_id or uuid.uuid4().hex,
            sha256=digest,
            size=len(payload),
            mtime=mtime,
            seen_at=datetime.now(UTC),
            data=base64.b64encode(compress(payload)).decode("ascii"),
        )

    def compressed(self) -> bytes:
        """The input's bytes as they travel: zlib-compressed."""
        return base64.b64decode(self.data)

    def payload(self) -> bytes:
        return zlib_ng.decompress(self.compressed())  # any zlib stream, in half the time of zlib's own


class Batch(BaseModel):
    v: int = WIRE_VERSION
    inputs: list[RawInput]

    def to_message(self) -> dict:
        return self.model_dump(mode="json")


T = TypeVar("T")


def packs(items: Iterable[T], size: Callable[[T], int], max_count: int, max_bytes: int) -> Iterator[list[T]]:
    """Consecutive packs of at most `max_count` items and `max_bytes` bytes (an item larger than that
    travels alone): one message each."""
    pack: list[T] = []
    total = 0
    for item in items:
        if pack and (len(pack) >= max_count or total + size(item) > max_bytes):
            yield pack
            pack, total = [], 0
        pack.append(item)
        total += size(item)
    if pack:
        yield pack
