"""py3langid's identifier, made once per process and walked faster; imported only when first needed.

Scores are py3langid's own to the bit: the same model values, the same feature counts in the same
order, the same scoring code. tests/test_hotpath.py compares every answer with the shipped identifier.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from py3langid.langid import MODEL_FILE, LanguageIdentifier


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


def load() -> FastIdentifier:
    """The bundled model, its feature table as float32.

    The model ships the table as float16, and scoring converted the rows a text touches to float32
    at every call: 60 % of the scoring. Converted once here (the same float32 values, so the same
    scores to the bit), at 57 MB instead of 28 MB; the float16 table is let go. The worker loads this
    before its pool forks, so the pool processes share the pages.
    """
    shipped = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return FastIdentifier(
        shipped.nb_ptc.astype(np.float32),
        shipped.nb_pc,
        shipped.nb_classes,
        shipped.tk_nextmove,
        shipped.tk_output,
        norm_probs=True,
        tk_row=shipped.tk_row,
    )
