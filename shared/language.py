"""py3langid's identifier, made once per process and walked faster; imported only when first needed.

Scores are py3langid's own to the bit: the same model values, the same feature counts in the same
order, the same scoring code. tests/test_hotpath.py compares every answer with the shipped identifier.

Unpacking the bundled model (LZMA, then float16 to float32) costs about 0.7 s of CPU, at every start
of every worker and of every process that derives items. So the unpacked arrays are kept on disk,
in the user's cache folder, and later processes map them instead: the scoring table is shared by
every process on the machine through the page cache, and a start costs about 0.05 s.

The DFA that finds the features is an Aho-Corasick automaton over a trie 6 bytes deep (checked when
the model is unpacked: trie_depth). Its state after any byte is then the state it reaches from the
start over the last 6 bytes alone, so the states of a whole text are found in 6 vectorised steps
over every position at once (window_features) instead of a Python step a byte.
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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import py3langid
from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

CACHE_FORMAT = 3  # raise when what is cached, or how, changes
STALE_TEMP_SECONDS = 3600  # a half-written cache folder this old belongs to a process that died writing it
# Another version's folder unread this long is removed (two installs on one machine each keep theirs).
UNUSED_SECONDS = 7 * 24 * 3600


def feature_counts(nextmove, rowbase, output, text: bytes) -> Counter | None:
    """py3langid's visit_counts with one step less a byte: for a DFA that trie_depth cannot vouch for,
    and the reference window_features is tested against. Every state's output is kept, and the states
    without one (-1) are dropped from the counts once at the end, not tested at each byte. The order
    of first sight, which fixes the order of the float32 sums in scoring, is the same."""
    state, outputs = 0, []
    append = outputs.append
    for letter in text:
        state = nextmove[rowbase[state] + letter]
        append(output[state])
    counts = Counter(outputs)
    counts.pop(-1, None)
    return counts or None


def window_features(nextmove: np.ndarray, rowbase: np.ndarray, outputs: np.ndarray, depth: int, text: bytes):
    """The features feature_counts finds, as (ids in order of first sight, their counts), for a DFA
    that is an Aho-Corasick automaton over a trie `depth` bytes deep: the state after each byte is
    the state reached from the start over the `depth` bytes ending at it (fewer at the text's start).
    So every position takes its oldest byte first, then the next, `depth` numpy steps in all; the
    same states as the byte-by-byte walk, 2-3x faster on a 500-character sample. None: no feature."""
    letters = np.frombuffer(text, dtype=np.uint8)
    states = np.zeros(len(letters), dtype=np.intp)
    for back in range(min(depth, len(letters)) - 1, -1, -1):
        # Positions from `back` on read the byte `back` places before them.
        states[back:] = nextmove[rowbase[states[back:]] + letters[: len(letters) - back]]
    features = outputs[states]
    features = features[features >= 0]
    if features.size == 0:
        return None
    ids, first_seen, counts = np.unique(features, return_index=True, return_counts=True)
    order = first_seen.argsort()  # the order of the float32 sums in scoring, so of its bits
    return ids[order], counts[order].astype(np.float32)


def trie_depth(nextmove: np.ndarray, rows: np.ndarray) -> int | None:
    """How deep the trie is, when the DFA is the Aho-Corasick automaton of a trie; None when not.

    Checked level by level from the start state (about 0.5 s, once a machine): a state first reached
    at level d+1 has exactly one way in from level d (its trie parent), and every other move of a
    state is the move of its failure state (for the first level, the start state itself), as the
    automaton is built. Then the state after a text is the longest suffix of it in the trie, so
    window_features may take the last `depth` bytes alone."""
    table = np.asarray(nextmove).reshape(-1, 256)
    row_of = np.asarray(rows, dtype=np.intp)
    depth = np.full(len(row_of), -1, dtype=np.intp)
    failure = np.zeros(len(row_of), dtype=np.intp)
    depth[0], level, deepest = 0, np.zeros(1, dtype=np.intp), 0
    while level.size:
        # In parts of a few thousand states: a level's moves at once would take some 200 MB.
        parts = [
            _trie_children(table, row_of, depth, failure, part, deepest)
            for part in np.array_split(level, -(-level.size // 4096))
        ]
        if any(children is None for children in parts):
            return None
        level = np.concatenate(parts)
        if np.unique(level).size != level.size:
            return None  # a state with two trie parents: not a trie
        deepest += bool(level.size)
    return deepest


def _trie_children(table, row_of, depth, failure, states, deepest) -> np.ndarray | None:
    """The trie children of `states` (all at depth `deepest`), their failure states set; None when a
    move is neither a child nor the failure state's move."""
    moves = table[row_of[states]].astype(np.intp)  # one row a state, one column a byte
    depth[moves[depth[moves] < 0]] = deepest + 1
    is_child = depth[moves] == deepest + 1
    fallback = 0 if deepest == 0 else table[row_of[failure[states]]]
    if np.any(np.where(is_child, moves, fallback) != moves):
        return None
    parents, letters = np.nonzero(is_child)
    children = moves[is_child]
    failure[children] = 0 if deepest == 0 else table[row_of[failure[states[parents]]], letters]
    return children


# A byte no UTF-8 text holds, and that takes every state of the shipped DFA back to the start state
# without a feature: texts joined with it are walked as if each were walked alone (checked once,
# when the model is unpacked: Model.separable; where it does not hold, each text is walked alone).
SEPARATOR = 0xFF


def separates(nextmove: np.ndarray, rows: np.ndarray, outputs: np.ndarray) -> bool:
    """Whether SEPARATOR leads every state to the start state, which has no feature."""
    moves = np.asarray(nextmove).reshape(-1, 256)[:, SEPARATOR][np.asarray(rows, dtype=np.intp)]
    return bool(np.all(moves == 0)) and int(outputs[0]) < 0


def windows_features_many(nextmove, rowbase, outputs, depth: int, texts: list[bytes]) -> list:
    """window_features of each text, the same ids in the same order with the same counts, from one
    walk over them all joined by SEPARATOR: numpy's per-call cost paid once for a message's
    articles instead of once an article (25 µs an article instead of 39)."""
    if not texts:
        return []
    joined = np.frombuffer(bytes([SEPARATOR]).join(texts) + bytes([SEPARATOR]), dtype=np.uint8)
    states = np.zeros(len(joined), dtype=np.intp)
    for back in range(depth - 1, -1, -1):
        states[back:] = nextmove[rowbase[states[back:]] + joined[: len(joined) - back]]
    features = outputs[states].astype(np.int64)
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), [len(text) + 1 for text in texts])
    kept = features >= 0
    features, owner = features[kept], owner[kept]
    span = int(outputs.max()) + 1
    keys, first_seen, counts = np.unique(owner * span + features, return_index=True, return_counts=True)
    order = first_seen.argsort()  # each text's features in order of first sight, the texts in turn
    keys, counts = keys[order], counts[order].astype(np.float32)
    bounds = np.searchsorted(keys // span, np.arange(len(texts) + 1))
    return [
        (keys[start:end] - number * span, counts[start:end]) if end > start else None
        for number, (start, end) in enumerate(zip(bounds[:-1], bounds[1:]))
    ]


class FastIdentifier(LanguageIdentifier):
    """py3langid's identifier, its features found by window_features when the DFA allows it, else
    by feature_counts; scored by py3langid's own code either way."""

    window: int | None = None
    separable = False
    found_ahead: Mapping[bytes, tuple | None] = MappingProxyType({})  # find_ahead's, by encoded text

    def find_ahead(self, texts: list[str]) -> None:
        """Find the features of texts about to be classified, all in one walk (a message's articles);
        classify() then scores them from these, and finds any other text's as before."""
        if self.window is None or not self.separable:
            return
        encoded = [self._encode(text) for text in texts]
        found = windows_features_many(self.tk_nextmove, self._rowbase, self.tk_output, self.window, encoded)
        self.found_ahead = dict(zip(encoded, found))

    def _raw_score(self, text: bytes):
        if self.window is None:
            counts = feature_counts(self.tk_nextmove, self._rowbase, self.tk_output, text)
            return self._sparse_score(counts, self.nb_ptc) if counts else super()._raw_score(b"")
        if text in self.found_ahead:
            found = self.found_ahead[text]
        else:
            found = window_features(self.tk_nextmove, self._rowbase, self.tk_output, self.window, text)
        if found is None:
            return super()._raw_score(b"")  # no features: py3langid's own answer for that
        ids, counts = found
        return np.log1p(counts) @ self.nb_ptc[ids] + self.nb_pc  # py3langid's _sparse_score, from arrays


@dataclass
class Model:
    """The bundled model as the identifier uses it."""

    table: np.ndarray  # float32, one row a DFA output, one column a language
    priors: np.ndarray
    classes: list[str]
    nextmove: np.ndarray  # the DFA: 256 moves a row
    rows: np.ndarray  # each state's row of moves
    outputs: np.ndarray  # each state's feature, -1 for none
    window: int | None  # trie_depth of the DFA
    # Whether SEPARATOR resets the DFA (separates): checked when the model is unpacked and cached
    # with it, since the check reads a column of the whole DFA (every page of its 39 MB).
    separable: bool = False

    def identifier(self) -> FastIdentifier:
        if self.window is None:  # the byte-by-byte walk indexes Python arrays faster than numpy's
            nextmove, rows, outputs = _int_array(self.nextmove), _int_array(self.rows), self.outputs.tolist()
        else:  # numpy's, the mapped DFA among them: one copy in the page cache for every process
            # No rows to py3langid: it would build its row offsets as a Python list, element by
            # element from numpy, only for them to be replaced by the array set below.
            nextmove, rows, outputs = self.nextmove, (), self.outputs
        identifier = FastIdentifier(
            self.table, self.priors, self.classes, nextmove, outputs, norm_probs=True, tk_row=rows
        )
        if self.window is not None:
            identifier.tk_row, identifier._rowbase = self.rows, self.rows.astype(np.intp) << 8
            identifier.window = self.window
            identifier.separable = self.separable
        return identifier


def load() -> FastIdentifier:
    """The bundled model, its scoring table as float32: from the cache when it holds this model, else
    unpacked and cached for the next process (where the cache folder can be written)."""
    folder = cache_folder()
    if folder is not None and folder.is_dir():
        try:
            return read_cache(folder).identifier()
        except (OSError, ValueError, KeyError, TypeError):
            shutil.rmtree(folder, ignore_errors=True)  # damaged: unpacked again below and written anew
    model = unpacked_model()
    if folder is not None:
        write_cache(model, folder)
    return model.identifier()


def unpacked_model() -> Model:
    """The model as py3langid ships it, the table made float32, the DFA's depth checked.

    The model ships the table as float16, and scoring converted the rows a text touches to float32
    at every call: 60 % of the scoring. Converted once here (the same float32 values, so the same
    scores to the bit), at 57 MB instead of 28 MB. The worker loads this before its pool forks, so
    the pool processes share the pages.
    """
    shipped = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    nextmove = np.frombuffer(shipped.tk_nextmove, dtype=f"u{shipped.tk_nextmove.itemsize}")
    rows = np.frombuffer(shipped.tk_row, dtype=f"u{shipped.tk_row.itemsize}")
    return Model(
        shipped.nb_ptc.astype(np.float32),
        np.asarray(shipped.nb_pc, dtype=np.float32),
        list(shipped.nb_classes),
        nextmove,
        rows,
        np.asarray(shipped.tk_output, dtype=np.int32),
        trie_depth(nextmove, rows),
        separates(nextmove, rows, np.asarray(shipped.tk_output, dtype=np.int32)),
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
    """The cached arrays, the table and the DFA mapped read-only: shared through the page cache."""
    table = np.asarray(np.load(folder / "table.npy", mmap_mode="r"))
    classes = json.loads((folder / "classes.json").read_text())
    dfa = json.loads((folder / "dfa.json").read_text())
    window, separable = dfa["window"], dfa["separable"]
    priors = np.load(folder / "priors.npy")
    # As plain arrays over the mapping: indexing a np.memmap runs its __getitem__ in Python each time.
    nextmove = np.asarray(np.load(folder / "nextmove.npy", mmap_mode="r"))
    rows = np.load(folder / "rows.npy")
    outputs = np.load(folder / "outputs.npy")
    fits = table.shape[1] == len(classes) == len(priors) and len(rows) == len(outputs)
    if not fits or len(nextmove) != (int(rows.max()) + 1) * 256 or not (window is None or isinstance(window, int)):
        raise ValueError(f"the cached language model in {folder} does not fit together")
    _mark_read(folder)
    if not isinstance(separable, bool):
        raise ValueError(f"the cached language model in {folder} does not say whether it can be walked joined")
    return Model(table, priors, classes, nextmove, rows, outputs, window, separable)


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
        np.save(partial / "nextmove.npy", model.nextmove)
        np.save(partial / "rows.npy", model.rows)
        np.save(partial / "outputs.npy", model.outputs)
        (partial / "classes.json").write_text(json.dumps(model.classes))
        (partial / "dfa.json").write_text(json.dumps({"window": model.window, "separable": model.separable}))
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
