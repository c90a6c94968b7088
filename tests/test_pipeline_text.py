"""The plain-text article path: decode -> parse -> normalise -> fingerprint, pure functions."""

from __future__ import annotations

import gzip
import json

import pytest

from shared.errors import InputError
from shared.parsers import EntryFailure
from shared.pipeline import Context, derive
from shared.settings import Settings
from tests.conftest import FIXTURES, SAMPLE

CONTEXT = Context.from_settings(Settings(_env_file=None))
GOLDEN = json.loads((FIXTURES / "golden" / "000_adca40b1d62e3161.json").read_text())


def one(name: str, data: bytes):
    [derived] = derive(name, data, CONTEXT)
    return derived


def test_sample_matches_golden_record():
    """The shipped sample parses to the reviewed golden record, field by field."""
    derived = one("000_adca40b1d62e3161.txt", SAMPLE.read_bytes())
    item = derived.item
    got = {
        field: getattr(item, field)
        for field in ("title", "body", "source", "original_source", "author", "language", "url")
    }
    got |= {"published_at": None, "content_hash": derived.content_hash, "format": derived.format}
    assert got == GOLDEN


def test_sample_meets_the_acceptance_wording():
    """Title, source, attribution, language, body span, bullets and paragraphs as the issue states them."""
    item = one("a.txt", SAMPLE.read_bytes()).item
    assert item.title == "Putin seeks foreign volunteers to fight in Ukraine"
    assert (item.source, item.original_source, item.language) == ("The Chronicle", "BBC News", "en")
    assert item.body.startswith("RUSSIAN President Vladimir Putin has called for foreign volunteers")
    assert item.body.endswith("to help evacuate people from Ukraine.")
    assert sum(line.startswith("— ") for line in item.body.split("\n")) == 4
    assert "\n\n" in item.body and "\n\n\n" not in item.body
    assert "Article Source" not in item.body and "Enjoyed this post" not in item.body
    assert "\u00a0" not in item.body and "16 000 volunteers" in item.body


def _variant(text: str) -> bytes:
    straight = text.replace("“", '"').replace("”", '"').replace("’", "'")
    return straight.replace("\n", "\r\n").encode()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_variant, id="crlf-and-straight-quotes"),
        pytest.param(lambda t: t.replace("The Chronicle\n", "The Daily Planet\n", 1).encode(), id="other-publisher"),
        pytest.param(lambda t: t.replace("\n\n", "\n\n\n").replace(" ", "  ").encode(), id="white-space"),
        pytest.param(lambda t: t.replace("— BBC News", "– Reuters").encode(), id="other-attribution"),
        pytest.param(lambda t: t.replace("Enjoyed this post? Share it!", "").encode(), id="no-share-prompt"),
        pytest.param(lambda t: t.upper().replace("ARTICLE SOURCE", "Article Source").encode(), id="upper-case"),
        pytest.param(lambda t: t.encode("utf-16"), id="utf-16-with-bom"),
        pytest.param(lambda t: b"\xef\xbb\xbf" + t.encode(), id="utf-8-bom"),
        pytest.param(lambda t: t.replace("—", "-").encode(), id="hyphen-dashes"),
    ],
)
def test_same_content_has_the_same_hash(change):
    """Formatting, publisher line, boilerplate, attribution and encoding never change identity."""
    text = SAMPLE.read_text()
    assert one("b.txt", change(text)).content_hash == GOLDEN["content_hash"]


def test_an_edited_sentence_changes_the_hash():
    """A real edit of the body is other content."""
    text = SAMPLE.read_text().replace("include Syrians skilled", "include Chechens skilled")
    assert one("c.txt", text.encode()).content_hash != GOLDEN["content_hash"]


def test_gzip_of_a_text_article_is_the_same_item():
    """.gz is a layer around a format, not a format."""
    assert one("a.txt.gz", gzip.compress(SAMPLE.read_bytes())).content_hash == GOLDEN["content_hash"]


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("a.pdf", b"%PDF-1.4", "unsupported format"),
        ("noext", b"Title\n\nBody.", "unsupported format"),
        ("empty.txt", b"", "empty document"),
        ("blank.txt", b"\n \n\t\n", "empty document"),
        ("title-only.txt", b"Just a title\n", "no body after the title"),
        (
            "boiler.txt",
            b"Title\n\nPublisher\n\nEnjoyed this post? Share it!\n",
            "no body left after removing boilerplate",
        ),
        ("bad.txt.gz", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 20, "corrupt gzip data"),
        ("cut.txt.gz", gzip.compress(b"Title\n\nBody text here.", mtime=0)[:-12], "truncated gzip data"),
    ],
)
def test_bad_input_is_an_input_error_with_a_reason(name, data, reason):
    """Each kind of bad input ends as a one-line reason, never another exception."""
    assert reason_of(name, data).startswith(reason)


def reason_of(name: str, data: bytes) -> str:
    """Why the input (or its single entry) fails: a document-level InputError or an EntryFailure."""
    try:
        [derived] = derive(name, data, CONTEXT)
    except InputError as exc:
        return str(exc)
    assert isinstance(derived, EntryFailure), f"{name} did not fail"
    return derived.reason


def test_a_decompression_bomb_is_refused_before_it_fills_memory():
    """The size cap holds for the decompressed content too."""
    small = Context(CONTEXT.rules, max_bytes=10_000, keep_raw=False)
    bomb = gzip.compress(b"A title\n\n" + b"x" * 5_000_000)
    with pytest.raises(InputError, match="decompressed content exceeds"):
        derive("bomb.txt.gz", bomb, small)


def test_cp1252_and_mojibake_are_repaired():
    """Legacy encodings are detected and double-encoded UTF-8 is mended."""
    cp1252 = "Caf\u00e9 prices rise\n\nThe caf\u00e9\u2019s owner said \u201cprices\u201d went up again this week.\n"
    assert (
        one("a.txt", cp1252.encode("cp1252")).item.body
        == "The caf\u00e9\u2019s owner said \u201cprices\u201d went up again this week."
    )
    mojibake = cp1252.encode("utf-8").decode("latin-1").encode("utf-8")
    assert one("b.txt", mojibake).item.title == "Caf\u00e9 prices rise"


def test_nul_and_control_characters_are_removed():
    """NUL bytes and stray control characters never reach the store."""
    item = one("a.txt", b"A ti\x00tle\n\nBody\x07 with a bell and a\x0b tab.\n").item
    assert (item.title, item.body) == ("A title", "Body with a bell and a tab.")


def test_publisher_line_needs_a_short_line_without_closing_punctuation():
    """A first body sentence is not mistaken for the publisher."""
    item = one("a.txt", b"Title\n\nIt rained.\n\nMore rain is expected tomorrow.\n").item
    assert item.source is None and item.body.startswith("It rained.")


def test_a_closing_attribution_on_its_own_line_leaves_the_body():
    """`— Outlet` after the last sentence, on a line of its own."""
    item = one("a.txt", "Title\n\nThe last sentence of the story.\n\u2014 Associated Press\n".encode()).item
    assert (item.body, item.original_source) == ("The last sentence of the story.", "Associated Press")


@pytest.mark.parametrize(
    "ending, kept",
    [
        ("Shares fell:\nAAPL\nMSFT\nNVDA\n\n(Reuters)", "Shares fell:\nAAPL\nMSFT\nNVDA"),
        ("And they lived happily ever after.\n\nTHE END\n\n\u2014 Story Magazine", "THE END"),
        ('She quotes: "Never give up." \u2014 Winston Churchill\n\n\u2014 BBC News', "\u2014 Winston Churchill"),
    ],
)
def test_a_closing_credit_takes_its_own_line_and_no_text_above(ending, kept):
    """One credit a pass: the lines above it are text more often than another credit."""
    text = f"Title\n\nThe Chronicle\n\nThe market had a long day of trading on Monday.\n\n{ending}\n"
    item = one("a.txt", text.encode()).item
    assert item.body.endswith(kept) and item.original_source


def test_a_dash_line_alone_is_the_text_not_a_credit():
    from shared.normalise import normalise
    from shared.parsers import ParsedItem

    for body in ("\u2014 Associated Press", "\n\u2014 Associated Press\n", "\nAFP"):
        item = normalise(ParsedItem(title="T", body=body), CONTEXT.rules)
        assert (item.body, item.original_source) == (body.strip(), None)


def test_a_list_ending_the_article_is_not_an_attribution():
    """A final bullet line stays body."""
    text = "Title\n\nWhat happened:\n\u2014 A fire broke out downtown\n\u2014 Firefighters came\n"
    item = one("a.txt", text.encode()).item
    assert item.original_source is None and item.body.endswith("\u2014 Firefighters came")


def test_article_source_fills_in_a_missing_publisher():
    """`Article Source: X` becomes the source when no publisher line named one."""
    text = "Title\n\nA body sentence that is long enough, with punctuation.\n\nArticle Source: Example Wire\n"
    item = one("a.txt", text.encode()).item
    assert (item.source, item.body) == ("Example Wire", "A body sentence that is long enough, with punctuation.")
