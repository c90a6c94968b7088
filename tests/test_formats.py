"""Every input format through the pure stages: held-out fixtures with hand-written expectations,
the same article in five formats, broken inputs, and feedparser's own test corpus."""

from __future__ import annotations

import fcntl
import gzip
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import feedparser
from html import escape

import pytest

from shared.errors import InputError
from shared.parsers import EntryFailure
from shared.pipeline import Context, Derived, derive
from shared.settings import Settings
from tests.conftest import FIXTURES, ROOT, SAMPLE

CONTEXT = Context.from_settings(Settings())
HELDOUT = FIXTURES / "heldout"
EXPECTED = json.loads((HELDOUT / "expected.json").read_text())
FIELDS = ("title", "body", "source", "original_source", "author", "published_at", "language", "url")
CORPUS_CACHE = ROOT / ".cache" / "feedparser-corpus"


def exported_value(item, field: str):
    value = getattr(item, field)
    return value.isoformat().replace("+00:00", "Z") if field == "published_at" and value else value


def compare(name: str) -> tuple[int, int, list[str]]:
    """(fields right, fields checked, what was wrong) for one held-out file."""
    got = derive(name, (HELDOUT / name).read_bytes(), CONTEXT)
    expected = EXPECTED[name]
    wrong = [f"{name}: {len(got)} entries, expected {len(expected)}"] if len(got) != len(expected) else []
    right = total = 0
    for entry, want in zip(got, expected):
        if "failure" in want:
            total += 1
            ok = isinstance(entry, EntryFailure) and entry.reason.startswith(want["failure"])
            right += ok
            wrong += [] if ok else [f"{name}: expected failure {want['failure']!r}, got {entry}"]
            continue
        for field in FIELDS:
            total += 1
            value = exported_value(entry.item, field) if isinstance(entry, Derived) else None
            right += value == want[field]
            wrong += [] if value == want[field] else [f"{name}.{field}: {value!r} != {want[field]!r}"]
    return right, total, wrong


def test_held_out_files_have_at_least_95_percent_of_fields_right():
    """The acceptance bar, over files in every format whose expected fields were written by hand."""
    right = total = 0
    problems: list[str] = []
    for name in EXPECTED:
        file_right, file_total, wrong = compare(name)
        right, total, problems = right + file_right, total + file_total, problems + wrong
    assert total > 100
    assert right / total >= 0.95, "\n".join(problems)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_held_out_file_golden(name):
    """Each held-out file, field by field (the bar above tolerates 5%; this shows where)."""
    _right, _total, wrong = compare(name)
    assert not wrong, "\n".join(wrong)


def test_the_same_article_in_five_formats_is_one_content():
    """.txt, .html, .md, .json and an RSS entry with the same title and body: one content hash."""
    files = [SAMPLE, *sorted((FIXTURES / "same-article").iterdir())]
    assert {f.suffix for f in files} == {".txt", ".html", ".md", ".json", ".rss"}
    hashes = {f.name: derive(f.name, f.read_bytes(), CONTEXT)[0].content_hash for f in files}
    assert len(set(hashes.values())) == 1, hashes


def test_a_feed_entry_keeps_its_id_link_author_and_date():
    [entry] = derive("putin.rss", (FIXTURES / "same-article" / "putin.rss").read_bytes(), CONTEXT)
    item = entry.item
    assert item.entry_id == "chronicle-2022-03-11-putin"
    assert item.url == "https://chronicle.example/world/putin-volunteers"
    assert item.published_at.isoformat() == "2022-03-11T12:05:00+00:00"
    assert (item.source, item.original_source) == ("The Chronicle — World", "BBC News")


def test_active_content_in_a_feed_entry_is_not_text():
    """feedparser reads entries unsanitized (a third of its time): what its sanitizer removed,
    scripts, styles and embedded objects with their contents, html_to_text leaves out itself."""
    active = (
        "<script>alert('script')</script><style>p { color: red }</style>"
        "<iframe src='https://x.example/'>iframe fallback</iframe><object data='x.swf'>object fallback</object>"
        "<embed src='x.swf'><applet code='X.class'>applet fallback</applet><noscript>noscript text</noscript>"
        "<form><input value='input value'><button>button text</button></form>"
    )
    description = f"<p>The harbour reopened on Monday.</p>{active}<p onclick='steal()'>Ferries sail again.</p>"
    feed = (
        "<?xml version='1.0'?><rss version='2.0'><channel><title>Port News</title><item><title>Harbour reopens</title>"
        f"<guid>h-1</guid><description>{escape(description)}</description></item></channel></rss>"
    )
    [entry] = derive("port.rss", feed.encode(), CONTEXT)
    assert entry.item.body == "The harbour reopened on Monday.\n\nFerries sail again."


def test_html_page_chrome_is_not_body():
    """Navigation, cookie banner, share bar, related links and footer stay out of the body."""
    [entry] = derive("berlin.html", (HELDOUT / "berlin.html").read_bytes(), CONTEXT)
    for chrome in ("Cookies", "Start", "Teilen", "Mehr zum Thema", "Tramlinie", "Impressum"):
        assert chrome not in entry.item.body


def test_json_aliases_are_extendable_from_settings():
    """A key the built-in table does not know is read once the settings name it."""
    record = json.dumps({"heading": "Odd keys here", "story": "A story told under unusual keys."}).encode()
    assert isinstance(derive("a.json", record, CONTEXT)[0], EntryFailure)
    extended = Context.from_settings(Settings(json_field_aliases={"title": ["heading"], "body": ["story"]}))
    [entry] = derive("a.json", record, extended)
    assert (entry.item.title, entry.item.body) == ("Odd keys here", "A story told under unusual keys.")


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("a.json", b"{not json", "not valid JSON: Expecting property name"),
        ("a.json", b"[1, 2", "not valid JSON:"),
        ("a.json", b'"just a string"', "not JSON: it does not start"),
        ("a.jsonl", b"plain text\n", "not JSON Lines"),
        ("a.html", b"no tags at all, just words", "not HTML"),
        (
            "a.html",
            b"<html><head><title>T</title></head><body><script>var x;</script></body></html>",
            "no article text found",
        ),
        ("a.html", b"<html><body><p>Some text but no title anywhere.</p></body></html>", "no title in the page"),
        ("a.xml", b"<note><to>you</to></note>", "not a feed document"),
        ("a.rss", b"<rss version='2.0'><channel><title>t</title></channel></rss>", "feed has no entries"),
        (
            "bomb.xml",
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><rss>&b;</rss>',
            "XML entity declarations are refused",
        ),
        ("a.md", b"---\ntitle: [unclosed\n---\nbody\n", "invalid YAML front matter"),
        ("a.md", b"Just a paragraph without any heading.\n", "no title"),
        ("a.txt", bytes(range(256)) * 40, "binary content"),
        ("a.docx", b"PK\x03\x04", "unsupported format"),
    ],
)
def test_broken_input_fails_with_a_reason(name, data, reason):
    """Broken documents of every format end as a clear reason, never an exception."""
    with pytest.raises(InputError) as failure:
        derive(name, data, CONTEXT)
    assert str(failure.value).startswith(reason)


def test_a_bad_entry_fails_alone():
    """In an array, a non-object entry fails and the good entry beside it is kept."""
    entries = derive("a.json", b'[{"title": "Good one", "body": "A fine body."}, 42]', CONTEXT)
    assert isinstance(entries[0], Derived) and entries[1] == EntryFailure("entry 2 is not a JSON object")


def test_gzip_of_every_format_is_read():
    for name in ("wire.json", "observatory.atom", "recette.md", "berlin.html"):
        plain = derive(name, (HELDOUT / name).read_bytes(), CONTEXT)
        zipped = derive(name + ".gz", gzip.compress((HELDOUT / name).read_bytes()), CONTEXT)
        assert [d.content_hash for d in plain] == [d.content_hash for d in zipped]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "cp1252", "latin-1"])
def test_encodings_are_detected(encoding):
    """BOMs, UTF-16/32 and the Western single-byte encodings all decode to the same text."""
    text = (
        "Café owners protest rent rises\n\nThe owners of the café on the square said the new rent "
        "was more than they could pay, and that they would close in the spring unless the landlord agreed.\n"
    )
    [entry] = derive("a.txt", text.encode(encoding), CONTEXT)
    assert entry.item.title == "Café owners protest rent rises"


def _corpus_files() -> list[Path]:
    """feedparser's own test feeds, from its source distribution (downloaded once, then cached)."""
    marker = CORPUS_CACHE / f"feedparser-{feedparser.__version__}.done"
    CORPUS_CACHE.mkdir(parents=True, exist_ok=True)
    with open(CORPUS_CACHE / "download.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test workers: one downloads, the others wait
        if not marker.exists():
            _download_corpus(marker)
    tests = CORPUS_CACHE / f"feedparser-{feedparser.__version__}" / "tests"
    return sorted(p for p in tests.rglob("*") if p.is_file() and p.suffix != ".py")


def _download_corpus(marker: Path) -> None:
    """The source distribution of the installed feedparser, from the package index, unpacked."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"feedparser=={feedparser.__version__}",
            "-d",
            str(CORPUS_CACHE),
        ],
        check=True,
    )
    [sdist] = CORPUS_CACHE.glob(f"feedparser-{feedparser.__version__}.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(CORPUS_CACHE, filter="data")
    marker.touch()


@pytest.mark.slow
def test_feedparser_corpus_never_crashes_a_parser():
    """Every file of feedparser's test corpus ends as items or a clear failure, with no other error."""
    files = _corpus_files()
    assert len(files) > 2000
    items = failures = 0
    for path in files:
        name = path.name if path.suffix in (".xml", ".rss", ".atom", ".rdf") else path.name + ".xml"
        try:
            results = derive(name, path.read_bytes(), CONTEXT)
        except InputError as exc:
            assert str(exc) and "\n" not in str(exc), path
            failures += 1
            continue
        items += sum(isinstance(r, Derived) for r in results)
        failures += sum(isinstance(r, EntryFailure) for r in results)
    assert items > 300 and failures > 0


def _mutations(seed: int, count: int):
    """Fixtures cut short, with bytes flipped, with garbage appended, or replaced by noise."""
    import random

    rng = random.Random(seed)
    files = sorted(p for p in FIXTURES.rglob("*") if p.is_file() and p.name != "expected.json")
    names = ["x.html", "x.json", "x.jsonl", "x.md", "x.xml", "x.txt", "x.rss", "x.txt.gz"]
    for _ in range(count):
        source = rng.choice(files)
        data = bytearray(source.read_bytes())
        how = rng.randrange(4)
        if how == 0:
            data = data[: rng.randrange(len(data) + 1)]
        elif how == 1:
            for _ in range(rng.randrange(1, 20)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif how == 2:
            data += bytes(rng.randrange(256) for _ in range(50))
        else:
            data = bytearray(rng.randrange(256) for _ in range(rng.randrange(200)))
        yield rng.choice([source.name, *names]), bytes(data)


@pytest.mark.slow
def test_mangled_inputs_end_as_items_or_reasons():
    """However broken the bytes, derive gives items, entry failures or an InputError: nothing else."""
    for name, data in _mutations(seed=7, count=1500):
        try:
            derive(name, data, CONTEXT)
        except InputError:
            pass
