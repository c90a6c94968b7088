"""configure_logging(): the only structlog set-up, shared by every process.

structlog and the standard library (Celery, kombu, watchdog, SQLAlchemy) go through one
ProcessorFormatter, so every line has the same shape and is written exactly once.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import warnings

import structlog

from shared.redact import mask_secrets
from shared.settings import Settings

LOG_FILE_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 5

# Libraries that are chatty at INFO about things an operator of this service need not see.
QUIET_LOGGERS = {
    "watchdog": logging.WARNING,
    "celery.worker.strategy": logging.WARNING,
    "celery.app.trace": logging.WARNING,
    "celery.beat": logging.WARNING,  # a line per tick ("Sending due task") every second
    "kombu": logging.WARNING,
    "alembic": logging.WARNING,  # a line per step ("Context impl", "Running upgrade"): store.migrated says it once
    "httpx": logging.WARNING,
}

SHARED_PROCESSORS: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.ExtraAdder(),
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def wants_json(settings: Settings) -> bool:
    if settings.log_format is not None:
        return settings.log_format == "json"
    return not sys.stderr.isatty()


def _renderer(as_json: bool) -> structlog.types.Processor:
    if as_json:
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())


def _masked_line(_logger, _name, line: str) -> str:
    return mask_secrets(line)


class _LineFormatter(structlog.stdlib.ProcessorFormatter):
    """ProcessorFormatter, its structlog events rendered without a copy of their record.

    structlog copies every record (a new LogRecord) before formatting it, so that no handler sees
    another's changes, then runs logging.Formatter.format over the rendered line: a sixth of a
    line's cost, and workers and the watcher write a line per input. Our processors read the
    event's own dict (copied here, as structlog does) and never the record, and the line they
    render is the whole output: the same line, with nothing copied. Lines from other libraries
    (Celery, kombu) take structlog's own way."""

    def format(self, record: logging.LogRecord) -> str:
        method = getattr(record, "_name", None)
        logger = getattr(record, "_logger", None)
        if method is None or logger is None or record.exc_info or record.stack_info:
            return super().format(record)
        event = dict(record.msg)  # type: ignore[arg-type]  (wrap_for_formatter put the event dict there)
        event["_record"] = record
        event["_from_structlog"] = True
        for processor in self.processors:
            event = processor(self.logger if self.logger is not None else logger, method, event)
        return event  # type: ignore[return-value]  (the last processor renders the line)


def _formatter(as_json: bool) -> logging.Formatter:
    final = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if as_json:
        final.append(structlog.processors.dict_tracebacks)
    final.append(_renderer(as_json))
    # Last, on the rendered line: a password in any URL, in any field or traceback, never reaches a log.
    final.append(_masked_line)
    return _LineFormatter(foreign_pre_chain=SHARED_PROCESSORS, processors=final)


_configured_for: str | None = None


def configured_process() -> str | None:
    """The process name logging was set up for in this process, or None before configure_logging."""
    return _configured_for


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """`warnings.showwarning` replaced: a Python warning as one `python.warning` event on one line."""
    structlog.get_logger("py.warnings").warning(
        "python.warning",
        category=category.__name__,
        message=" ".join(str(message).split()),
        origin=f"{filename}:{lineno}",
    )


def _skip_unused_record_fields() -> None:
    """No line shows a record's source file, thread or process (our `process` is the role, bound
    below): logging need not look them up for every record (the logging HOWTO's "Optimization";
    a tenth of a line's cost, and workers write a line per input)."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def configure_logging(settings: Settings, process: str) -> None:
    """Route structlog and stdlib logging through one handler (plus the rotated JSON file, if set)."""
    level = logging.getLevelName(settings.log_level.upper())
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers[0].setFormatter(_formatter(wants_json(settings)))
    if settings.log_file is not None:
        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.handlers.RotatingFileHandler(
            settings.log_file, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
        )
        to_file.setFormatter(_formatter(as_json=True))
        handlers.append(to_file)

    _skip_unused_record_fields()
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, quiet_level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(quiet_level, level))
    # Python warnings (Celery's about running as root, deprecations) become events of the same shape,
    # one line each: logging's own capture would log warnings.formatwarning's several lines as one.
    warnings.showwarning = _log_warning

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(process=process)
    global _configured_for
    _configured_for = process
