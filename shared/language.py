"""py3langid's identifier, made once per process and walked faster; imported only when first needed.

Scores are py3langid's own to the bit: the same model values, the same feature counts in the same
order, the same scoring code. tests/test_hotpath.py compares every answer with the shipped identifier.

Unpacking the bundled model (LZMA, then float16 to float32) costs about 0.7 s of CPU, at every start
of every worker and of every process that derives items. So the unpacked arrays are kept on disk,
in the user's cache folder, and later processes map them instead: the scoring table is shared by
every process on the machine through the page cache, and a start costs about 0.05 s.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import py3langid
from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

CACHE_FORMAT = 1  # raise when what is cached, or how, changes
STALE_TEMP_SECONDS = 3600  # a half-written cache folder this old belongs to a process that died writing it
# Another version's folder unread this long is removed (two installs on one machine each keep theirs).
UNUSED_SECONDS = 7 * 24 * 3600


def feature_counts(nextmove, rowbase, output, text: bytes) -> Counter | None:
    """py3langid's visit_counts with one step less a byte (its DFA walk is pure Python, most of the
    cost of a language guess): every state's output is kept, and the states without one (-1) are
    dropped from the counts once at the end, not tested at each byte. The order of first sight, which
    fixes the order of the float32 sums in scoring, is the same."""
    state, outputs = 0, []
    append = outputs.append
    for letter in text:
        state = nextmove[rowbase[state] + letter]
        append(output[state])
    counts = Counter(outputs)
    counts.pop(-1, None)
    return counts or None


class FastIdentifier(LanguageIdentifier):
    def _raw_score(self, text: bytes):
        counts = feature_counts(self.tk_nextmove, self._rowbase, self.tk_output, text)
        if counts:
            return self._sparse_score(counts, self.nb_ptc)
        return super()._raw_score(b"")  # no features: py3langid's own answer for that


@dataclass
class Model:
    """The bundled model as the identifier uses it."""

    table: np.ndarray  # float32, one row a DFA output, one column a language
    priors: np.ndarray
    classes: list[str]
    nextmove: array
    rows: array
    outputs: list[int]

    def identifier(self) -> FastIdentifier:
        return FastIdentifier(
            self.table,
            self.priors,
            self.classes,
            self.nextmove,
            self.outputs,
            norm_probs=True,
            tk_row=self.rows,
        )


def load() -> FastIdentifier:
    """The bundled model, its scoring table as float32: from the cache when it holds this model, else
    unpacked and cached for the next process (where the cache folder can be written)."""
    folder = cache_folder()
    if folder is not None and folder.is_dir():
        try:
            return read_cache(folder).identifier()
        except (OSError, ValueError):
            shutil.rmtree(folder, ignore_errors=True)  # damaged: unpacked again below and written anew
    model = unpacked_model()
    if folder is not None:
        write_cache(model, folder)
    return model.identifier()


def unpacked_model() -> Model:
    """The model as py3langid ships it, the table made float32.

    The model ships the table as float16, and scoring converted the rows a text touches to float32
    at every call: 60 % of the scoring. Converted once here (the same float32 values, so the same
    scores to the bit), at 57 MB instead of 28 MB. The worker loads this before its pool forks, so
    the pool processes share the pages.
    """
    shipped = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return Model(
        shipped.nb_ptc.astype(np.float32),
        np.asarray(shipped.nb_pc, dtype=np.float32),
        list(shipped.nb_classes),
        shipped.tk_nextmove,
        shipped.tk_row,
        list(shipped.tk_output),
    )


# -- the cache ---------------------------------------------------------------------------------------


def cache_folder() -> Path | None:
    """Where this model's unpacked arrays live: named after the py3langid version and the model file's
    digest, so every install of the same model shares one folder and an upgrade reads its own. None
    where there is no home folder to cache in."""
    try:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ingest"
        digest = hashlib.sha256((MODEL_DIR / MODEL_FILE).read_bytes()).hexdigest()  # about 10 ms
    except (OSError, RuntimeError, KeyError):
        return None
    identity = hashlib.sha256(f"{py3langid.__version__}|{digest}".encode()).hexdigest()
    return root / f"langid-{CACHE_FORMAT}-{identity[:16]}"


def read_cache(folder: Path) -> Model:
    """The cached arrays: the table mapped read-only (shared through the page cache), the DFA copied
    into arrays (its walk indexes them a byte at a time, faster than a mapped buffer)."""
    table = np.asarray(np.load(folder / "table.npy", mmap_mode="r"))
    classes = json.loads((folder / "classes.json").read_text())
    priors = np.load(folder / "priors.npy")
    nextmove = _int_array(np.load(folder / "nextmove.npy", mmap_mode="r"))
    rows = _int_array(np.load(folder / "rows.npy", mmap_mode="r"))
    outputs = np.load(folder / "outputs.npy").tolist()
    fits = table.shape[1] == len(classes) == len(priors) and len(rows) == len(outputs)
    if not fits or len(nextmove) != (max(rows) + 1) * 256:
        raise ValueError(f"the cached language model in {folder} does not fit together")
    _mark_read(folder)
    return Model(table, priors, classes, nextmove, rows, outputs)


def _mark_read(folder: Path) -> None:
    """Its time set to now, so _remove_leftovers of another version keeps it; a cache on a read-only
    filesystem (a container's image) is read all the same."""
    try:
        os.utime(folder)
    except OSError:
        pass


def write_cache(model: Model, folder: Path) -> None:
    """Written into a hidden folder beside it, then renamed into place: a reader sees all of it or
    none. Another process that wrote it first wins; a folder that cannot be written is no error."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(folder)
        partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    except OSError:
        return
    try:
        np.save(partial / "table.npy", model.table)
        np.save(partial / "priors.npy", model.priors)
        np.save(partial / "nextmove.npy", np.frombuffer(model.nextmove, dtype=f"u{model.nextmove.itemsize}"))
        np.save(partial / "rows.npy", np.frombuffer(model.rows, dtype=f"u{model.rows.itemsize}"))
        np.save(partial / "outputs.npy", np.asarray(model.outputs, dtype=np.int32))
        (partial / "classes.json").write_text(json.dumps(model.classes))
        partial.rename(folder)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)


def _remove_leftovers(keep: Path) -> None:
    """Half-written folders whose writer died long ago, and other versions' folders long unread."""
    now = time.time()
    for other in keep.parent.glob("*langid-*"):
        try:
            age = now - other.stat().st_mtime
        except OSError:
            continue  # removed meanwhile by another process
        if other != keep and age > (STALE_TEMP_SECONDS if other.name.startswith(".") else UNUSED_SECONDS):
            shutil.rmtree(other, ignore_errors=True)


def _int_array(values: np.ndarray) -> array:
    result = array({2: "H", 4: "I", 8: "L"}[values.dtype.itemsize])
    result.frombytes(memoryview(np.ascontiguousarray(values)).cast("B"))
    return result
