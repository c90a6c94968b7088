"""`ingest`: the command line. Every failure is one line on stderr and a non-zero exit, never a traceback.

The commands live in the cli_* modules beside this one; importing them registers them on the app.
"""

from __future__ import annotations

import gc

# The collector is off while the command's modules load (a tenth of a command's start-up, 50 ms,
# goes on collections that find nothing to free), then everything loaded is frozen out of its sight
# (a long-running process's full collections scan only what it made since) and it is on again.
gc.disable()

import atexit
import logging
import os
import sys
import threading
import tomllib

import redis
import typer
import typer.main
from kombu.exceptions import OperationalError as BrokerError
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError as DatabaseError

from shared.db import dispose_engines
from shared.errors import ServiceError
from shared.redact import mask_secrets
from shared.settings import get_settings
from worker import broker

from worker import cli_processes, cli_state, cli_ops, cli_feeds, cli_hooks  # noqa: F401, I001  (registered in this order)
from worker.cli_common import cli

gc.freeze()
gc.enable()


def _one_line(exc: BaseException) -> str:
    """The error as one line for the user, with any password in it masked."""
    return mask_secrets(_reason(exc))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ServiceError):
        return str(exc)
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"invalid setting{' ' + where if where else ''}: {first['msg']}"
    if isinstance(exc, tomllib.TOMLDecodeError):
        return f"cannot read the settings file: {exc}"
    if isinstance(exc, DatabaseError):
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
        return f"cannot use the database at {get_settings().store_url} ({reason})"
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return f"cannot reach Redis ({broker.describe_redis_error(exc)})"
    if isinstance(exc, BrokerError):
        return f"cannot reach the broker ({broker.describe_redis_error(exc)})"
    return f"{type(exc).__name__}: {exc}"


def main() -> None:
    try:
        _run()
    except SystemExit as exc:
        exit_now(exc.code)
    exit_now(0)


def _run() -> None:
    command = typer.main.get_command(cli)
    try:
        sys.exit(command.main(prog_name="ingest", standalone_mode=False) or 0)
    except typer.TyperException as exc:  # usage errors: one line too, not a framed box
        typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except (KeyboardInterrupt, typer.Abort):
        sys.exit(130)
    except (
        ServiceError,
        ValidationError,
        tomllib.TOMLDecodeError,
        DatabaseError,
        redis.exceptions.RedisError,
        BrokerError,
    ) as exc:
        typer.echo(f"error: {_one_line(exc)}", err=True)
        sys.exit(1)
    except Exception as exc:  # the last line of defence: a bug still ends as one line, detail at debug
        logging.getLogger("ingest.cli").debug("cli.crashed", exc_info=True)
        typer.echo(f"error: internal error: {_one_line(exc)} (INGEST_LOG_LEVEL=debug shows the detail)", err=True)
        sys.exit(1)


def exit_now(code: object) -> None:
    """End the process once the command is done, without Python's teardown of every module.

    Tearing down what a command imports (SQLAlchemy, pydantic, redis, Celery) takes about 90 ms of
    a 2-core machine's time after the last line is written, each time a command runs: the tail of
    every `ingest wait` and `ingest status`. What a normal exit does that matters still happens:
    exit handlers run (temporary folders, multiprocessing, Celery), log handlers and the standard
    streams are flushed. A command that leaves a non-daemon thread running exits normally, which
    waits for it."""
    if any(
        thread.is_alive() and not thread.daemon
        for thread in threading.enumerate()
        if thread is not threading.main_thread()
    ):
        sys.exit(code)
    status = _exit_status(code)
    atexit._run_exitfuncs()  # noqa: SLF001  (no public way to run them early; os._exit skips them)
    # Closing the store's connections lets SQLite fold its write-ahead log into the database file,
    # as a normal exit does: a copy of data/ingest.db made while nothing runs is then whole.
    dispose_engines()  # (logging's own exit handler, run above, has flushed and closed the log files)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # a reader gone (`ingest export | head`): not this command's failure
            pass
        except ValueError:  # closed already
            pass
        except OSError:  # a full disk under `ingest feeds export > backup.opml`: Python exits 120 then
            status = status or 120
    os._exit(status)


def _exit_status(code: object) -> int:
    """What sys.exit(code) would end with: None is 0, a number itself, anything else printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    main()
