"""Plain text as people save it (issue 11): wrapped headlines and bodies, setext titles, `Key: value`
header blocks, bylines, date lines, datelines and credit lines. Held-out files written by hand with
their expected fields (tests/fixtures/shapes), a test per rule, and the sample re-wrapped."""

from __future__ import annotations

import json
import textwrap

import pytest

from shared.parsers.text import wrap_width
from shared.pipeline import Context, Derived, derive
from shared.settings import Settings
from tests.conftest import FIXTURES, SAMPLE

CONTEXT = Context.from_settings(Settings())
SHAPES = FIXTURES / "shapes"
EXPECTED = json.loads((SHAPES / "expected.json").read_text())
FIELDS = ("title", "body", "source", "original_source", "author", "published_at", "updated_at", "language", "url")
GOLDEN = json.loads((FIXTURES / "golden" / "000_adca40b1d62e3161.json").read_text())


def _exported(item, field: str):
    value = getattr(item, field)
    return value.isoformat().replace("+00:00", "Z") if field.endswith("_at") and value else value


def _wrong_fields(name: str) -> tuple[int, list[str]]:
    [derived] = derive(name, (SHAPES / name).read_bytes(), CONTEXT)
    assert isinstance(derived, Derived), derived
    [want] = EXPECTED[name]
    wrong = [
        f"{name}.{field}: {_exported(derived.item, field)!r} != {want[field]!r}"
        for field in FIELDS
        if _exported(derived.item, field) != want[field]
    ]
    return len(FIELDS), wrong


def test_every_shape_has_three_held_out_files():
    shapes = {name.split("-")[0] for name in EXPECTED}
    assert shapes == {"wrapped", "setext", "header", "byline", "date", "wire", "credits", "rights"}
    for shape in shapes - {"credits", "rights"}:
        assert sum(name.startswith(f"{shape}-") for name in EXPECTED) >= 3, shape
    assert sum(name.startswith(("credits-", "rights-")) for name in EXPECTED) >= 3


def test_held_out_text_shapes_have_at_least_98_percent_of_fields_right():
    total, problems = 0, []
    for name in EXPECTED:
        checked, wrong = _wrong_fields(name)
        total, problems = total + checked, problems + wrong
    assert (total - len(problems)) / total >= 0.98, "\n".join(problems)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_held_out_text_shape_golden(name):
    _checked, wrong = _wrong_fields(name)
    assert not wrong, "\n".join(wrong)


def _sample_rewrapped(width: int, crlf: bool) -> bytes:
    blocks = SAMPLE.read_text(encoding="utf-8").split("\n\n")
    text = "\n\n".join("\n".join(textwrap.fill(line, width) for line in block.split("\n")) for block in blocks)
    return (text.replace("\n", "\r\n") if crlf else text).encode()


@pytest.mark.parametrize("width", [40, 60, 72])
@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_the_sample_rewrapped_at_any_width_is_the_same_item(width, crlf):
    """Headline included: the same content hash, title, publisher and original source as the sample."""
    [derived] = derive("sample.txt", _sample_rewrapped(width, crlf), CONTEXT)
    item = derived.item
    assert derived.content_hash == GOLDEN["content_hash"]
    assert (item.title, item.source, item.original_source) == (
        GOLDEN["title"],
        GOLDEN["source"],
        GOLDEN["original_source"],
    )


def _one(text: str):
    [derived] = derive("a.txt", text.encode(), CONTEXT)
    return derived.item


def test_a_wrapped_headline_is_one_title():
    item = _one("A long headline that runs over the width of the text\nand onto a second line\n\n" + WRAPPED_BODY)
    assert item.title == "A long headline that runs over the width of the text and onto a second line"


def test_an_unwrapped_text_keeps_its_first_line_as_the_title_and_the_second_as_publisher():
    item = _one("Title\nThe Wire\nA first sentence of the body, long enough.\nA second sentence.\n")
    assert (item.title, item.source) == ("Title", "The Wire")


def test_a_wrapped_paragraph_starting_with_a_short_line_is_not_a_publisher():
    item = _one("Storm closes the passes\n\n" + WRAPPED_BODY)
    assert item.source is None and item.body.startswith("Heavy snow closed")


def test_setext_underlines_mark_the_title():
    assert _one("The title\n=========\n\nThe body, in a sentence.\n").title == "The title"
    assert _one("The title\n---------\n\nThe body, in a sentence.\n").title == "The title"


def test_a_header_block_sets_its_fields():
    item = _one("Title: T\nSource: S\nAuthor: A\nDate: 2022-03-12\nURL: https://x.example/a\nLanguage: fr\n\nBody.\n")
    assert (item.title, item.source, item.author, item.url, item.language) == (
        "T",
        "S",
        "A",
        "https://x.example/a",
        "fr",
    )
    assert item.published_at.isoformat() == "2022-03-12T00:00:00+00:00" and item.body == "Body."


def test_one_key_value_line_opening_an_article_is_body():
    item = _one("Roads reopen\n\nUpdate: the road is open again after the storm.\n")
    assert item.body == "Update: the road is open again after the storm."


def test_a_byline_sets_the_author_and_leaves_the_body():
    item = _one("Title\n\nBy Jane Smith and Ali Khan, Political Reporter\n\nThe body, in a sentence.\n")
    assert (item.author, item.source, item.body) == ("Jane Smith and Ali Khan", None, "The body, in a sentence.")


def test_a_sentence_starting_with_by_is_body():
    item = _one("Title\n\nBy the end of the day, the river had burst its banks.\n\nMore rain fell.\n")
    assert item.author is None and item.body.startswith("By the end of the day")


@pytest.mark.parametrize(
    ("line", "field", "instant"),
    [
        ("Published 12 March 2022, 14:05 GMT", "published_at", "2022-03-12T14:05:00+00:00"),
        ("Updated: 3 May 2023 09:15 BST", "updated_at", "2023-05-03T08:15:00+00:00"),
        ("2022-04-24T07:30:00+02:00", "published_at", "2022-04-24T05:30:00+00:00"),
        ("Posted on 2022-04-24", "published_at", "2022-04-24T00:00:00+00:00"),
    ],
)
def test_a_date_line_sets_the_date_and_leaves_the_body(line, field, instant):
    item = _one(f"Title\n\n{line}\n\nThe body, in a sentence.\n")
    assert getattr(item, field).isoformat() == instant and item.body == "The body, in a sentence."


def test_a_byline_line_is_not_identity():
    """The same article with and without a byline and a date line is one item."""
    plain = derive("a.txt", b"Title\n\nPublisher\n\nThe body, in a sentence.\n", CONTEXT)[0]
    signed = derive(
        "b.txt", b"Title\n\nPublisher\n\nBy Jane Smith\nPublished 12 March 2022\n\nThe body, in a sentence.\n", CONTEXT
    )[0]
    assert plain.content_hash == signed.content_hash and signed.item.author == "Jane Smith"


def test_wrap_width_is_none_for_the_sample_and_a_width_for_wrapped_text():
    assert wrap_width(SAMPLE.read_text().split("\n")) is None
    assert wrap_width(WRAPPED_BODY.split("\n")) == 40


WRAPPED_BODY = (
    textwrap.fill(
        "Heavy snow closed three mountain passes overnight and stranded dozens of lorries on the approach roads, "
        "police said on Wednesday morning.",
        40,
    )
    + "\n\n"
    + textwrap.fill("Drivers were asked to stay at home until the ploughs had cleared the roads.", 40)
)
