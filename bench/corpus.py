"""Distinct, realistic inputs for the end-to-end benchmarks: seed-style articles, HTML pages, RSS feeds.

Every text is drawn from a fixed vocabulary (the words of the repository's sample article and of the
labelled story corpus) with a seeded random generator, so a run is reproducible and no two documents
are near-copies of each other: random sentences share almost no word 3-shingles, so every item is
stored as an item of its own and the near-duplicate step does its full lookup without joining.
"""

from __future__ import annotations

import html
import json
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "seeds" / "000_adca40b1d62e3161.txt"
STORIES = ROOT / "tests" / "fixtures" / "clusters" / "stories.json"
PUBLISHERS = ["The Chronicle", "Coast Herald", "Evening Post", "Valley Times", "Metro Daily", "The Observer Desk"]
OUTLETS = ["BBC News", "Reuters", "Associated Press", "The Guardian", "Al Jazeera", "Deutsche Welle"]
SECTIONS = ["World", "Politics", "Business", "Science", "Culture", "Sport"]


@lru_cache(maxsize=1)
def vocabulary() -> tuple[str, ...]:
    text = SAMPLE.read_text()
    if STORIES.exists():
        corpus = json.loads(STORIES.read_text())
        text += " ".join(p for story in corpus["stories"] for p in story["paragraphs"])
    return tuple(sorted({word for word in re.findall(r"[a-z]{2,}", text.lower())}))


@dataclass(frozen=True)
class Story:
    title: str
    publisher: str
    outlet: str
    paragraphs: list[str]
    published: datetime


class Writer:
    """Stories from one seeded generator: the same seed gives the same stories."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.words = vocabulary()

    def sentence(self, low: int = 10, high: int = 20) -> str:
        words = self.rng.choices(self.words, k=self.rng.randint(low, high))
        return " ".join(words).capitalize() + "."

    def paragraph(self) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(2, 4)))

    def story(self, number: int) -> Story:
        # The number in the title keeps titles distinct even if two bodies were ever alike.
        title = " ".join(self.rng.choices(self.words, k=self.rng.randint(5, 9))).capitalize() + f" {number}"
        published = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=self.rng.randrange(500_000))
        return Story(
            title=title,
            publisher=self.rng.choice(PUBLISHERS),
            outlet=self.rng.choice(OUTLETS),
            paragraphs=[self.paragraph() for _ in range(self.rng.randint(6, 9))],
            published=published,
        )


def seed_article(story: Story) -> str:
    """Laid out like seeds/000_…txt: title, publisher line, paragraphs, attribution, source line, share prompt."""
    body = list(story.paragraphs)
    body[-1] = f"{body[-1]} — {story.outlet}"
    return "\n\n".join(
        [story.title, story.publisher, *body, f"Article Source: {story.publisher}", "Enjoyed this post? Share it!"]
    )


def html_page(story: Story, number: int) -> str:
    """An article page as publishers serve them: metadata in the head, navigation, banners, footer."""
    slug = f"story-{number}"
    site = story.publisher
    paragraphs = "\n".join(f"<p>{html.escape(p)}</p>" for p in story.paragraphs)
    nav = "".join(f'<li><a href="/{s.lower()}">{s}</a></li>' for s in SECTIONS)
    related = "".join(
        f'<li><a href="/related/{number}-{i}">{html.escape(Writer(number * 7 + i).sentence(4, 7))}</a></li>'
        for i in range(3)
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(story.title)} | {html.escape(site)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta property="og:title" content="{html.escape(story.title)}">
<meta property="og:site_name" content="{html.escape(site)}">
<meta property="og:type" content="article">
<meta name="author" content="Staff Reporter">
<meta property="article:published_time" content="{story.published.isoformat()}">
<link rel="canonical" href="https://news.example/world/{slug}?utm_source=feed">
<link rel="stylesheet" href="/static/site.css">
</head>
<body>
<div id="cookie-consent">We use cookies to improve your experience. <button>Accept all</button></div>
<header class="site-header"><a class="logo" href="/">{html.escape(site)}</a>
<nav><ul>{nav}</ul></nav></header>
<main>
<article>
<h1>{html.escape(story.title)}</h1>
<div class="byline">By Staff Reporter ·
<time datetime="{story.published.isoformat()}">{story.published:%d %B %Y}</time></div>
{paragraphs}
</article>
<div class="share-bar">Share: Facebook Twitter Email</div>
<aside class="related"><h2>Related stories</h2><ul>{related}</ul></aside>
</main>
<footer><p>© 2024 {html.escape(site)} · Imprint · Privacy · Contact</p>
<nav><a href="/about">About us</a> <a href="/jobs">Jobs</a></nav></footer>
</body>
</html>
"""


def feed_entry(story: Story, guid: str) -> tuple[str, str, str]:
    """(guid, title, description) for tests.feedserver.rss: the description is escaped HTML, as feeds carry it."""
    description = html.escape("".join(f"<p>{html.escape(p)}</p>" for p in story.paragraphs[:4]))
    return guid, html.escape(story.title), description


def write_articles(folder: Path, count: int, seed: int, prefix: str = "doc", html_pages: bool = False) -> list[str]:
    """`count` distinct inputs written into `folder` (before any timing starts); their file names."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = Writer(seed)
    names = []
    for number in range(count):
        story = writer.story(number)
        name = f"{prefix}-{seed}-{number:06d}.{'html' if html_pages else 'txt'}"
        text = html_page(story, number) if html_pages else seed_article(story)
        (folder / name).write_text(text, encoding="utf-8")
        names.append(name)
    return names
