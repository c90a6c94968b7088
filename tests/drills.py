"""The fault drills' table: each drill records what it did and what was lost, the session writes the
README's table from the records (between its drill-table markers) when every drill ran.

A drill asserts zero lost and zero duplicated itself; the table shows what was measured, so a
reader sees the drills, their load and their faults without reading the tests.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "build" / "drills"
README = ROOT / "README.md"
BEGIN = "<!-- drill-table:begin (written by the tests: tests/drills.py) -->"
END = "<!-- drill-table:end -->"
# In the order the table lists them; the table is rewritten only when all of them recorded a row.
DRILLS = (
    "workers killed mid-batch",
    "`ingest up` killed, hung up on, stopped",
    "Redis restarted mid-run",
    "Redis down at start",
    "SQLite locked by another process",
    "PostgreSQL refusing connections",
    "disk full under data/",
    "a worker host killed (roles on several hosts)",
)


def start_session() -> None:
    RECORDS.mkdir(parents=True, exist_ok=True)
    for old in RECORDS.glob("*.json"):
        old.unlink()


def record(drill: str, load: str, fault: str, lost: int, duplicated: int) -> None:
    """One drill's row (called by the drill once it has counted)."""
    assert drill in DRILLS, drill
    RECORDS.mkdir(parents=True, exist_ok=True)
    row = {"drill": drill, "load": load, "fault": fault, "lost": lost, "duplicated": duplicated}
    (RECORDS / f"{DRILLS.index(drill)}.json").write_text(json.dumps(row))


def table() -> str | None:
    """The Markdown table, or None while some drill has not recorded its row."""
    rows = [RECORDS / f"{n}.json" for n in range(len(DRILLS))]
    if not all(path.exists() for path in rows):
        return None
    lines = ["| drill | load | fault | lost | duplicated |", "| --- | --- | --- | --- | --- |"]
    for path in rows:
        row = json.loads(path.read_text())
        lines.append(f"| {row['drill']} | {row['load']} | {row['fault']} | {row['lost']} | {row['duplicated']} |")
    return "\n".join(lines)


def write_readme() -> None:
    found = table()
    text = README.read_text()
    if found is None or BEGIN not in text or END not in text:
        return
    head, rest = text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    updated = f"{head}{BEGIN}\n{found}\n{END}{tail}"
    if updated != text:
        README.write_text(updated)
