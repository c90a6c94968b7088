"""Settings: defaults < config file < environment, and config/settings.toml shows every setting."""

from __future__ import annotations

import tomllib

import pytest

from shared.settings import Settings
from tests.conftest import ROOT

CONFIG = ROOT / "config" / "settings.toml"


@pytest.fixture
def no_ingest_env(monkeypatch):
    for name in [n for n in __import__("os").environ if n.startswith("INGEST_")]:
        monkeypatch.delenv(name)


def test_config_file_lists_every_setting_with_its_default(monkeypatch, no_ingest_env, tmp_path):
    """The shipped TOML names each field, and loading it gives exactly the built-in defaults."""
    text = CONFIG.read_text()
    shipped = tomllib.loads(text)
    for name in Settings.model_fields:
        assert name in shipped or f"# {name} =" in text, f"{name} missing from config/settings.toml"
    monkeypatch.setenv("INGEST_CONFIG", str(CONFIG))
    from_file = Settings()
    monkeypatch.setenv("INGEST_CONFIG", str(tmp_path / "absent.toml"))
    assert from_file == Settings()


def test_environment_wins_over_the_file_which_wins_over_defaults(tmp_path, monkeypatch, no_ingest_env):
    """Later sources win."""
    config = tmp_path / "settings.toml"
    config.write_text('log_level = "warning"\nmax_file_bytes = 1000\n')
    monkeypatch.setenv("INGEST_CONFIG", str(config))
    monkeypatch.setenv("INGEST_MAX_FILE_BYTES", "2000")
    settings = Settings()
    assert (settings.log_level, settings.max_file_bytes, settings.keep_raw) == ("warning", 2000, True)


def test_unset_database_means_sqlite_under_the_data_folder(monkeypatch, no_ingest_env, tmp_path):
    monkeypatch.setenv("INGEST_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("INGEST_DATA_DIR", str(tmp_path / "d"))
    assert Settings().store_url == f"sqlite:///{tmp_path / 'd' / 'ingest.db'}"
