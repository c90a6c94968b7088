"""The pure hot path's shortcuts change no result: ftfy skipped only where it would change nothing,
language detected on a bounded sample, the canonical form computed the faster way."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import re
import shutil
import subprocess
import unicodedata
import zlib

import ftfy
import numpy as np
import pytest
from ftfy.badness import MOJIBAKE_CATEGORIES

from shared import language
from shared.decode import FTFY_CONFIG, decode_text, needs_ftfy
from shared.messages import compress
from shared.fingerprint import QUOTE_STYLES, WORD, canonical, minhash, shingle_hashes
from shared.normalise import (
    LANGUAGE_SAMPLE_CHARS,
    _language_identifier,
    boilerplate_match,
    detect_language,
    language_sample,
)
from shared.parsers import ParsedItem
from shared.pipeline import Context, Derived, derive
from shared.settings import Settings
from tests.conftest import FIXTURES, SAMPLE
from tests.corpus import CORPUS

CONTEXT = Context.from_settings(Settings(_env_file=None))
RULES = CONTEXT.rules
# The content hash of every held-out entry (None: an entry that fails), as computed before the shortcuts.
HELD_OUT_HASHES = {
    "berlin.html": ["76459d8075b361e01450405e44a31a60a8392eb8f4d5f5dc314d7574eeab149b"],
    "coffee.txt": ["871c3277488494222f15c30664006f8703924c97707a12a732a7816aa7b2ea94"],
    "farm.rdf": ["ae4ab771c18165befb04f0fc650debe5809016c672c46299ef285123acc3879c"],
    "harbour.htm": ["ea847d8df9c97b4cab2e07102a22f03cabfe377605103ebd520174ba01130722"],
    "nighttrain.txt": ["a5694b13646d7e103f1b082c5909bdf8f55722fc204216e9bbe5ea6dbef870e7"],
    "notes.json": [
        "16c136cc8b740cb91b7937b58c01d3325cb0935eebff1dd4ba4b44d9d2e5b7f2",
        "883733b4fdb4d8f3a0b17a511bb6727d82d6e833de41cd9ccdcfb4406e1be935",
    ],
    "observatory.atom": [
        "6ff4e1a9b49f3ae1ec7555ed11221e483d7378c4426d3673561f2c1f87f249c8",
        "ddb6e0053fcd765b37de238d0724ebafd9034f85e347aa1e40e5c665882b2105",
    ],
    "pair.json": [
        "c6ff5d7ec6af4e5402b603901e065071f22d5ca8d3a8f1a21a763cddc3c1c981",
        "843c1257a4dd975b2979576be852ceaae86f3c894780e1ae10bf161beb32262b",
    ],
    "recette.md": ["9e417c9838661a344cb4aa108bccc716d11088a48f4537224220bd023488a572"],
    "release-notes.markdown": ["b5098e77444b272d6a71f49dd64c9895ecbbe521226340e9bf65edfed1a681df"],
    "storm.txt.gz": ["c6d67d267d28862d802791a06d8638652d186fc5818836f191e803e235a93c04"],
    "stream.jsonl": [
        "11d990ed34351c13b4c4adc8a3f544619f584b764d5aad59564f84857114139b",
        None,
        "ce0644309d3f7000a89984fc5e009c6c7189c473a4b3e782eb89cd26a8827a56",
    ],
    "wire.json": ["8de006c306541c025f22045e1671ce8a7a49f80f3f60a75e9c38ec96db6a75c8"],
}


def _mojibake_alphabet() -> list[str]:
    """Every character ftfy's mojibake detector knows, some it does not, and ASCII around them."""
    chars = set("aAzZ .,?!1_-\n\t'\"e\u0301") | set("中文日本語ЖжΩω√≈‚Ä€вЂβāГўВЂ×²³ØÙà°\ufb01")
    for category in MOJIBAKE_CATEGORIES.values():
        for match in re.finditer(r"(.)-(.)|(.)", category, re.DOTALL):
            first, last = (match.group(1), match.group(2)) if match.group(1) else (match.group(3),) * 2
            chars.update(chr(code) for code in range(ord(first), ord(last) + 1))
    return sorted(chars)


@pytest.mark.parametrize(
    ("broken", "repaired"),
    [
        ("The cafÃ© on the square opened.\n", "The café on the square opened.\n"),
        ("He said â€œnoâ€\x9d and left.\n", "He said “no” and left.\n"),
        ("Le dÃ©jeuner est servi Ã\xa0 midi.\n", "Le déjeuner est servi à midi.\n"),
    ],
)
def test_real_mojibake_is_still_repaired(broken, repaired):
    """Text that ftfy repairs goes through ftfy."""
    assert needs_ftfy(broken)
    assert decode_text(broken.encode()) == repaired


@pytest.mark.parametrize(
    "clean",
    [
        "“Quoted,” she said — it’s the café’s last day… 16\u00a0000 people.\n",
        "Ünïcödé naïve façade, Straße, smörgåsbord, jalapeño.\n",
        "北京欢迎你。東京は雨です。서울의 봄.\n",
        "Plain ASCII only, nothing to repair here.\n",
    ],
)
def test_clean_text_is_left_as_written_without_ftfy(clean):
    """Curly quotes, dashes, accents and CJK need no repair, and ftfy is not run on them."""
    assert not needs_ftfy(clean)
    assert decode_text(clean.encode()) == clean


@pytest.mark.parametrize(
    "touched",
    ["a \ufb01ne day\n", "one\u2028two\n", "cafe\u0301 not NFC\n", "x \x1b[31mred\x1b[0m\n", "curly \x92s\n"],
)
def test_what_other_ftfy_fixers_change_still_goes_through_ftfy(touched):
    """Ligatures, line separators, text not in NFC, terminal escapes and C1 controls are ftfy's to fix."""
    assert needs_ftfy(touched)
    assert ftfy.fix_text(touched, FTFY_CONFIG) != touched


def test_ftfy_is_skipped_only_where_it_would_change_nothing():
    """Random strings of the characters mojibake is made of: a skipped string is one ftfy leaves alone."""
    rng = random.Random(20)
    alphabet = _mojibake_alphabet()
    skipped = 0
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) if rng.random() < 0.6 else rng.choice("abc de.") for _ in range(8))
        if not needs_ftfy(text):
            skipped += 1
            assert ftfy.fix_text(text, FTFY_CONFIG) == text, repr(text)
    assert skipped > 5_000  # the shortcut is taken often, so the check above means something


def test_the_sample_article_skips_ftfy():
    """The shipped sample (curly quotes, dashes, a no-break space) is clean: no ftfy on the hot path."""
    assert not needs_ftfy(SAMPLE.read_text())


def test_language_sample_is_bounded_and_cut_between_words():
    text = " ".join(["word"] * 2000)
    sample = language_sample(text)
    assert len(sample) <= LANGUAGE_SAMPLE_CHARS and text.startswith(sample) and sample.endswith("word")
    assert language_sample("short text") == "short text"
    assert language_sample("字" * 5000) == "字" * LANGUAGE_SAMPLE_CHARS  # no spaces: cut at the limit


def _long_document(language_paragraphs: list[str]) -> ParsedItem:
    return ParsedItem(title="A long report", body="\n\n".join(language_paragraphs * 3))


@pytest.mark.parametrize("fixture", ["berlin.html", "recette.md"])
def test_a_long_documents_language_is_the_same_from_the_sample_or_the_whole(fixture):
    """English, German and French documents far longer than the sample: the same language either way."""
    english = [p for story in CORPUS["stories"] for p in story["paragraphs"]]
    [foreign] = derive(fixture, (FIXTURES / "heldout" / fixture).read_bytes(), CONTEXT)
    for item in (_long_document(english), _long_document([foreign.item.body] * 20)):
        assert len(item.body) > 4 * LANGUAGE_SAMPLE_CHARS
        whole_language, confidence = _language_identifier().classify(f"{item.title}\n{item.body}")
        assert confidence >= RULES.language_min_confidence
        assert detect_language(item, RULES).language == whole_language


@pytest.fixture(scope="module")
def shipped_identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


LANGUAGE_TEXTS = [
    "",
    "   ",
    "12345 67890",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "敏捷的棕色狐狸跳过了懒狗。",
    "A SHOUTED HEADLINE IN CAPITALS",
    *(p for story in CORPUS["stories"][:20] for p in story["paragraphs"][:2]),
]


def test_the_faster_language_walk_scores_as_py3langid_does_to_the_bit(shipped_identifier):
    """Our identifier (float32 table, the faster feature walk) against the one py3langid ships:
    the same language and the same confidence, bit for bit, on texts of many scripts, the sample and
    random bytes."""
    _same_answers(_language_identifier(), shipped_identifier)


def test_the_shipped_dfa_is_checked_as_a_trie_six_bytes_deep_and_walked_by_windows(shipped_identifier):
    """The identifier takes the windowed walk (trie_depth said yes), and the windowed walk finds the
    features the byte-by-byte walk finds, in the same order, on every text of _language_texts."""
    ours = _language_identifier()
    assert ours.window == 6
    for text in _language_texts():
        encoded = ours._encode(text)
        counts = language.feature_counts(
            shipped_identifier.tk_nextmove, shipped_identifier._rowbase, shipped_identifier.tk_output, encoded
        )
        found = language.window_features(ours.tk_nextmove, ours._rowbase, ours.tk_output, ours.window, encoded)
        if counts is None:
            assert found is None, text
        else:
            assert [found[0].tolist(), found[1].tolist()] == [list(counts), list(counts.values())], text


def _dfa(moves: dict[int, dict[str, int]], default: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A DFA as py3langid lays one out: a row of 256 moves a state (`default` for unlisted bytes)."""
    table = np.array([[moves.get(state, {}).get(chr(b), default[state]) for b in range(256)] for state in default])
    return table.astype(np.uint32).ravel(), np.arange(len(default), dtype=np.uint16)


# The Aho-Corasick automaton of the trie {"a", "ab"}: 0 the start, 1 "a", 2 "ab".
AB_MOVES = {0: {"a": 1}, 1: {"a": 1, "b": 2}, 2: {"a": 1}}


@pytest.mark.parametrize(
    "moves, default, depth",
    [
        (AB_MOVES, {0: 0, 1: 0, 2: 0}, 2),
        ({**AB_MOVES, 2: {"a": 1, "b": 2}}, {0: 0, 1: 0, 2: 0}, None),  # "abb" would stay at "ab"
        ({0: {}, 1: {}}, {0: 1, 1: 0}, None),  # parity: state 1 has 256 ways in from the start
        ({0: {"a": 1}, 1: {"a": 0}}, {0: 0, 1: 0}, None),  # "aa" back to the start: not its failure move
        ({0: {}}, {0: 0}, 0),  # no pattern at all
    ],
)
def test_trie_depth_says_yes_only_for_an_aho_corasick_automaton(moves, default, depth):
    """The windowed walk is taken only when trie_depth proves the state depends on the last bytes alone."""
    nextmove, rows = _dfa(moves, default)
    assert language.trie_depth(nextmove, rows) == depth


def _language_texts() -> list:
    rng = random.Random(7)
    texts = [*LANGUAGE_TEXTS, SAMPLE.read_text(), *(bytes(rng.randrange(256) for _ in range(200)) for _ in range(50))]
    return texts + [language_sample(SAMPLE.read_text()[start:]) for start in range(0, 600, 37)]


def _same_answers(ours, shipped) -> None:
    for text in _language_texts():
        assert ours.classify(text) == shipped.classify(text), text
        assert ours.rank(text) == shipped.rank(text), text


def test_the_model_is_unpacked_once_and_read_back_from_the_cache_to_the_bit(shipped_identifier, tmp_path, monkeypatch):
    """The first load writes the unpacked model into the user's cache folder; the next maps it, and
    answers as the shipped identifier does, bit for bit."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = language.load()
    folder = language.cache_folder()
    assert folder.parent == tmp_path / "ingest" and (folder / "table.npy").is_file()
    again = language.load()
    assert isinstance(again.nb_ptc.base, np.memmap)  # mapped from the cache, not unpacked again
    assert not isinstance(first.nb_ptc.base, np.memmap)
    _same_answers(again, shipped_identifier)
    # The byte-by-byte walk, kept for a model whose DFA is no such trie, answers the same too.
    _same_answers(dataclasses.replace(language.read_cache(folder), window=None).identifier(), shipped_identifier)


def test_a_damaged_cache_is_replaced_and_an_unwritable_one_is_no_error(shipped_identifier, tmp_path, monkeypatch):
    """A cache file cut short (a full disk, a copy interrupted) is unpacked again and rewritten; a
    cache folder that cannot be made leaves the model unpacked in memory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    language.load()
    table = language.cache_folder() / "table.npy"
    size = table.stat().st_size
    with table.open("r+b") as cut:
        cut.truncate(size // 2)
    _same_answers(language.load(), shipped_identifier)
    assert table.stat().st_size == size
    stale = tmp_path / "ingest" / ".langid-0-old-x"
    stale.mkdir()
    os.utime(stale, (0, 0))
    shutil.rmtree(language.cache_folder())
    language.load()
    assert not stale.exists()  # a writer that died long ago: its half-written folder is removed

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    _same_answers(language.load(), shipped_identifier)


def test_a_cache_on_a_read_only_filesystem_is_read_not_unpacked_again(tmp_path, monkeypatch):
    """A container image's cache cannot be touched or rewritten: it is mapped all the same."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    language.load()
    folder = str(language.cache_folder())
    if subprocess.run(["mount", "--bind", folder, folder], capture_output=True).returncode != 0:
        pytest.skip("needs a bind mount (root with CAP_SYS_ADMIN) to make a read-only filesystem")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", folder], check=True, capture_output=True)
        with pytest.raises(OSError):
            os.utime(folder)
        assert isinstance(language.load().nb_ptc.base, np.memmap)
    finally:
        subprocess.run(["umount", folder], check=True)


BOILERPLATE_LINES = [
    "",
    "Enjoyed this post? Share it!",
    "enjoyed the story share it",
    "Share this article on Facebook, Twitter.",
    "Read more here:",
    "Advertisement",
    "ADVERTISEMENT below",
    "(Reporting by Jane Doe; Editing by John Roe)",
    "Reporting by A; editing by B.",
    "© 2024 The Chronicle",
    "Copyright (c) The Chronicle. All rights reserved.",
    "Follow us on",
    "abab",
    "abba",
    "Putin seeks foreign volunteers to fight in Ukraine",
    "Click here to subscribe to everything, now and forever, and a great deal more words than eighty.",
]


@pytest.mark.parametrize(
    "extra",
    [
        [],
        [r"(ab)\1"],  # a backreference: its group's number would change in a joined regex
        [r"(?i)shout"],  # a global flag
        [r"(?P<w>a)b", r"(?P<w>b)a"],  # one group name twice
        [r"(a|ab)(c|bcd)(d*)", r"[a-z]+ \d+"],
    ],
)
def test_boilerplate_joined_into_one_regex_matches_the_lines_any_pattern_matched(extra):
    """The joined alternation drops exactly the lines one of the patterns, tried alone, would drop."""
    patterns = tuple(re.compile(p, re.IGNORECASE) for p in [*Settings(_env_file=None).boilerplate_patterns, *extra])
    is_boilerplate = boilerplate_match(patterns)
    rng = random.Random(3)
    lines = BOILERPLATE_LINES + [
        "".join(rng.choice("abcd ()©.;") for _ in range(rng.randrange(12))) for _ in range(3000)
    ]
    for line in lines:
        assert bool(is_boilerplate(line)) == any(p.fullmatch(line) for p in patterns), line


def _old_canonical(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).translate(str.maketrans(QUOTE_STYLES)).casefold()
    return re.sub(r"\s+", " ", folded).strip()


def test_canonical_form_is_unchanged():
    """The regex quote replacement and split/join give what translate and a \\s+ regex gave."""
    texts = [SAMPLE.read_text(), "  “A” ‘b’ — c – d … e\u2003f\u00a0g\u3000h\n\ti  ", "ＦＵＬＬ ﬁ ½", "", " "]
    rng = random.Random(4)
    alphabet = [*QUOTE_STYLES, *" \t\n\u00a0\u2009\u3000\x1c\x85", *"aZ9é中-"]
    texts += ["".join(rng.choice(alphabet) for _ in range(30)) for _ in range(2000)]
    for text in texts:
        assert canonical(text) == _old_canonical(text), repr(text)


def _old_shingle_hashes(body: str) -> np.ndarray:
    """shingle_hashes as it was before the ASCII way (commit b554426): the index's signatures were made so."""
    words = WORD.findall(unicodedata.normalize("NFKC", body).casefold())
    hashed = np.fromiter(map(zlib.crc32, map(str.encode, words)), dtype=np.uint64, count=len(words))
    if len(hashed) < 3:
        return hashed
    return hashed[:-2] * np.uint64(0x9E3779B97F4A7C15) ^ hashed[1:-1] * np.uint64(0xC2B2AE3D27D4EB4F) ^ hashed[2:]


def test_shingles_are_unchanged_so_the_index_needs_no_rebuild():
    """Signatures in a running index were made by the old way: the faster one finds the same shingles,
    on ASCII text, on text made ASCII by plain quotes, and on text that stays Unicode."""
    assert not any(WORD.search(style) for style in QUOTE_STYLES)  # plain quotes cannot join or split words
    texts = [SAMPLE.read_text(), "“Don’t” — it’s 9–5 … ÉTÉ ﬁn Straße ½ x_y a\u0301b", "", "one", "two words"]
    texts += [path.read_text(errors="replace") for path in sorted(FIXTURES.rglob("*")) if path.is_file()]
    rng = random.Random(7)
    alphabet = [*QUOTE_STYLES, *" \t\n\u00a0\u3000_'-.,", *"aZ9é中ßİΣ\u0301\u0903\ufb01²٣", "\U0001d400"]
    texts += ["".join(rng.choice(alphabet) for _ in range(40)) for _ in range(3000)]
    for text in texts:
        assert np.array_equal(shingle_hashes(text), _old_shingle_hashes(text)), repr(text)
    # And the sample's whole signature, as the index holds it.
    assert hashlib.sha256(minhash(SAMPLE.read_text()).tobytes()).hexdigest() == (
        "1c5c09305f2d535788bb976f05f7d68e28e20e4369d00e5b4c45d8371c2a8909"
    )


@pytest.mark.parametrize("name", sorted(HELD_OUT_HASHES))
def test_held_out_content_hashes_are_unchanged(name):
    """Identity is forever: every held-out entry keeps the content hash it had."""
    derived = derive(name, (FIXTURES / "heldout" / name).read_bytes(), CONTEXT)
    got = [entry.content_hash.removeprefix("sha256:") if isinstance(entry, Derived) else None for entry in derived]
    assert got == HELD_OUT_HASHES[name]


def test_a_changed_copy_is_what_dataclasses_replace_makes():
    """ParsedItem.but and Draft.but copy the fields' dict instead of calling __init__ again: the same
    copy as dataclasses.replace for each field, the original untouched, an unknown field refused."""
    from datetime import UTC, datetime

    from shared.parsers.text import Draft

    item = ParsedItem("A title", "A body.", source="S", published_at=datetime(2024, 5, 1, tzinfo=UTC), url="u")
    for field in dataclasses.fields(ParsedItem):
        changed = item.but(**{field.name: "changed"})
        assert changed == dataclasses.replace(item, **{field.name: "changed"})
        assert type(changed) is ParsedItem and getattr(item, field.name) != "changed"
    assert item.but(title="T", body="B") == dataclasses.replace(item, title="T", body="B")
    draft = Draft(["a", "b"], fields={"title": "x"})
    assert draft.but(lines=["b"]) == dataclasses.replace(draft, lines=["b"])
    with pytest.raises(TypeError, match="no field nope"):
        item.but(nope=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.but(title="T").title = "again"


@pytest.mark.parametrize("size", [0, 1, 511, 2_653, 40_000, 300_000])
def test_compressed_payloads_are_plain_zlib_streams_no_larger_than_zlibs_fastest(size):
    """Messages and raw blobs are read with the standard zlib module, before and after zlib-ng."""
    sample = SAMPLE.read_bytes()
    payload = (sample * (size // len(sample) + 1))[:size]
    packed = compress(payload)
    assert zlib.decompress(packed) == payload  # what the worker and the raw-blob readers call
    assert zlib.decompressobj().decompress(packed) == payload
    assert len(packed) <= len(zlib.compress(payload, 1))
    noise = random.Random(size).randbytes(size)  # incompressible: stored as it is, framed
    assert zlib.decompress(compress(noise)) == noise


ASCII_TEXTS = [
    "",
    "Plain words, `quoted` and 'single' - dashes... 42",
    "MIXED Case\nlines\tand  spaces",
    "".join(char for char in SAMPLE.read_text() if char.isascii()),
]


@pytest.mark.parametrize("text", ASCII_TEXTS)
def test_ascii_text_takes_a_shortcut_to_the_same_forms(text):
    """ASCII skips NFKC, the quote-style regex, the invisible-character regex and NFC: each would
    leave it as it is (only the backtick is an ASCII quote style), so the forms are the same."""
    from shared.fingerprint import _plain_quotes, folded
    from shared.normalise import _nfc, _visible

    assert folded(text) == _plain_quotes(unicodedata.normalize("NFKC", text)).casefold()
    assert _visible(text) == text and (_nfc(text) or "") == unicodedata.normalize("NFC", text)


@pytest.mark.parametrize("level", [1, 6, 9])
def test_a_message_compressed_by_zlib_itself_still_reads(level):
    """Messages queued, and blobs kept, by a version that compressed with the zlib module."""
    import base64

    from shared.messages import RawInput

    payload = SAMPLE.read_bytes()
    raw = RawInput.from_bytes(payload, kind="file", ref="old.txt")
    old = raw.model_copy(update={"data": base64.b64encode(zlib.compress(payload, level)).decode("ascii")})
    assert old.payload() == payload == raw.payload()


def test_features_found_ahead_for_many_texts_are_each_texts_own_and_score_to_the_bit(shipped_identifier):
    """A message's samples walked as one (joined by a byte that sends the DFA back to its start):
    each text's features are those of its own walk, in the same order, and classify() then answers
    as the shipped identifier does, bit for bit, whatever else was walked with it."""
    ours = _language_identifier()
    assert ours.separable
    texts = _language_texts()
    walked = language.windows_features_many(
        ours.tk_nextmove, ours._rowbase, ours.tk_output, ours.window, [ours._encode(text) for text in texts]
    )
    for text, found in zip(texts, walked):
        alone = language.window_features(
            ours.tk_nextmove, ours._rowbase, ours.tk_output, ours.window, ours._encode(text)
        )
        assert (found is None) == (alone is None), text
        if found is not None:
            assert np.array_equal(found[0], alone[0]) and np.array_equal(found[1], alone[1]), text
    ours.find_ahead(texts)
    try:
        _same_answers(ours, shipped_identifier)
    finally:
        ours.find_ahead([])


def test_a_message_prepared_together_gives_the_items_each_input_gives_alone():
    """prepare_all (a message's languages identified in one walk) against prepare, input by input:
    the same writes, field for field, over every fixture of every format, a feed's many entries, a
    duplicate, an input that fails and one whose language is declared."""
    from shared.messages import RawInput
    from shared.pipeline import prepare, prepare_all

    paths = sorted(path for path in FIXTURES.rglob("*") if path.is_file() and path.stat().st_size < 200_000)
    inputs = [
        RawInput.from_bytes(path.read_bytes(), kind="file", ref=str(path.relative_to(FIXTURES))) for path in paths
    ]
    inputs += [RawInput.from_bytes(SAMPLE.read_bytes(), kind="file", ref="again.txt")]  # a duplicate
    inputs += [RawInput.from_bytes(b"\x00\x01\x02 binary", kind="file", ref="bad.txt")]  # a failure
    together = prepare_all(inputs, CONTEXT)
    alone = [prepare(raw, CONTEXT) for raw in inputs]
    assert [one.writes for one in together] == [one.writes for one in alone]
    languages = {write.item.language for one in together for write in one.writes if hasattr(write, "item")}
    assert len(inputs) > 40 and {"en", "de", "fr"} <= languages
