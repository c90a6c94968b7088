"""The log line formatter: structlog's own line, without its copy of every record."""

from __future__ import annotations

import logging
import re

import pytest
import structlog

from shared import logging as ingest_logging
from shared.settings import Settings


TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z")


class Captured(logging.Handler):
    """Formats each record with both formatters, as a handler would."""

    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.ours = ingest_logging._formatter(as_json)
        self.theirs = structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=self.ours.foreign_pre_chain, processors=self.ours.processors
        )
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((self.ours.format(record), self.theirs.format(record)))


@pytest.mark.parametrize("as_json", [True, False])
def test_every_line_is_the_one_structlogs_formatter_writes(as_json, monkeypatch):
    monkeypatch.setenv("INGEST_LOG_FORMAT", "json" if as_json else "console")
    ingest_logging.configure_logging(Settings(), "test")
    captured = Captured(as_json)
    root = logging.getLogger()
    root.addHandler(captured)
    try:
        log = structlog.get_logger("tests.logging")
        log.info("item.stored", item_id=1, origin="seeds/a.txt", similarity=None)
        log.warning("feed.failed", url="https://user:secret@example.org/feed", reason="timed out")
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            log.exception("task.crashed", task="ingest.process")
        logging.getLogger("celery.worker").warning("a %s line", "foreign")
    finally:
        root.removeHandler(captured)
    assert len(captured.lines) == 4
    *ours_events, (ours_foreign, theirs_foreign) = captured.lines
    for ours, theirs in ours_events:
        assert ours == theirs  # structlog stamped the time once, before either formatter: equal whole
    # Another library's record is stamped by each formatter as it formats it: equal but for the time.
    assert TIMESTAMP.sub("", ours_foreign) == TIMESTAMP.sub("", theirs_foreign)
    assert "secret" not in "".join(ours for ours, _ in captured.lines)
