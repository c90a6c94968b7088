"""Near-copies made from written stories by the edits real syndication makes, deterministically."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from tests.conftest import FIXTURES

CORPUS = json.loads((FIXTURES / "clusters" / "stories.json").read_text())
REPLACEMENTS = [
    "officials said on Monday",
    "according to a statement",
    "as expected",
    "late last night",
    "this week",
    "for the second time",
    "in a surprise move",
    "once again",
]


@dataclass(frozen=True)
class Version:
    story: str  # the label: versions of one story belong in one cluster
    topic: str
    edit: str
    title: str
    body: str


def edit_sentence(paragraphs: list[str], rng: random.Random) -> list[str]:
    """One sentence edited: a few words in one paragraph replaced."""
    index = rng.randrange(1, len(paragraphs))
    words = paragraphs[index].split()
    start = rng.randrange(0, max(1, len(words) - 4))
    words[start : start + 3] = rng.choice(REPLACEMENTS).split()
    return [*paragraphs[:index], " ".join(words), *paragraphs[index + 1 :]]


def add_paragraph(paragraphs: list[str], rng: random.Random, pool: list[str]) -> list[str]:
    index = rng.randrange(1, len(paragraphs) + 1)
    return [*paragraphs[:index], rng.choice(pool), *paragraphs[index:]]


def drop_paragraph(paragraphs: list[str], rng: random.Random) -> list[str]:
    index = rng.randrange(1, len(paragraphs))
    return [*paragraphs[:index], *paragraphs[index + 1 :]]


def outlet_frame(paragraphs: list[str], rng: random.Random, outlets: list[dict]) -> list[str]:
    """Another outlet's own lead-in and sign-off."""
    outlet = rng.choice(outlets)
    return [f"{outlet['lead']} {paragraphs[0]}", *paragraphs[1:], outlet["sign_off"]]


def apply(edit: str, paragraphs: list[str], rng: random.Random, pool: list[str], outlets: list[dict]) -> list[str]:
    for step in edit.split("+"):
        if step == "sentence":
            paragraphs = edit_sentence(paragraphs, rng)
        elif step == "added":
            paragraphs = add_paragraph(paragraphs, rng, pool)
        elif step == "dropped":
            paragraphs = drop_paragraph(paragraphs, rng)
        elif step == "outlet":
            paragraphs = outlet_frame(paragraphs, rng, outlets)
    return paragraphs


def versions(
    stories: list[dict] | None = None, edits: list[str] | None = None, seed: int = 11, pool: list[str] | None = None
) -> list[Version]:
    """Each story as written, plus one near-copy per edit."""
    rng = random.Random(seed)
    found = []
    for story in stories or CORPUS["stories"]:
        paragraphs = story["paragraphs"]
        found.append(
            Version(story["id"], story.get("topic", story["id"]), "original", story["title"], "\n\n".join(paragraphs))
        )
        for edit in edits or CORPUS["edits"]:
            edited = apply(edit, list(paragraphs), rng, pool or CORPUS["extra_paragraphs"], CORPUS["outlets"])
            found.append(
                Version(story["id"], story.get("topic", story["id"]), edit, story["title"], "\n\n".join(edited))
            )
    return found


def synthetic_stories(count: int, seed: int = 5) -> list[dict]:
    """Stories of made-up words, each of its own: for volume tests, not for quality."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ren", "tu", "sa", "vel", "do", "ne", "ri", "pa", "gor", "li", "an", "te", "bu"]
    vocabulary = ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 3))) for _ in range(3000)]
    sentence = lambda: " ".join(rng.choice(vocabulary) for _ in range(rng.randint(12, 20))).capitalize() + "."  # noqa: E731
    return [
        {
            "id": f"s{number}",
            "title": f"Story {number} " + sentence()[:40],
            "paragraphs": [" ".join(sentence() for _ in range(2)) for _ in range(6)],
        }
        for number in range(count)
    ]
