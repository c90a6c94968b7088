"""The seeds folder's rules, on a real folder."""

from __future__ import annotations

import pytest

from shared.seeds import is_ignored, scan


@pytest.mark.parametrize(
    ("ref", "ignored"),
    [
        ("a.txt", False),
        ("sub/dir/a.md", False),
        (".hidden.txt", True),
        (".git/config", True),
        ("sub/.cache/a.txt", True),
        ("a.txt.tmp", True),
        ("a.part", True),
        ("a.partial", True),
        ("a.crdownload", True),
        (".a.txt.swp", True),
        ("notes.txt~", True),
        ("a.tmp.txt", False),
    ],
)
def test_ignored_names(ref, ignored):
    """Hidden names and the suffixes of files still being written are not inputs."""
    assert is_ignored(ref) is ignored


def test_scan_finds_regular_files_and_follows_no_link(tmp_path):
    """Subfolders are entered; links to files or folders, inside or out, are not followed."""
    root, outside = tmp_path / "seeds", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("x")
    (root / "a.txt").write_text("a")
    (root / "sub" / "b.txt").write_text("bb")
    (root / "sub" / "b.txt.part").write_text("partial")
    (root / "escape.txt").symlink_to(outside / "secret.txt")
    (root / "escape-dir").symlink_to(outside, target_is_directory=True)
    (root / "inner-link.txt").symlink_to(root / "a.txt")
    found = {seed.ref: seed.size for seed in scan(root)}
    assert found == {"a.txt": 1, "sub/b.txt": 2}


def test_count_untaken_follows_the_scan_rules(tmp_path):
    """The count `ingest wait` asks for: inputs missing from the ledger or changed since, by scan_entries' rules."""
    from shared.seeds import count_untaken, scan_entries

    for ref in ("a.txt", "sub/b.txt", "sub/deeper/c.txt", ".hidden/d.txt", "e.txt.part", ".f.txt"):
        (tmp_path / ref).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / ref).write_text(ref)
    (tmp_path / "link.txt").symlink_to(tmp_path / "a.txt")
    taken = {ref: (size, mtime) for ref, _path, size, mtime in scan_entries(tmp_path)}
    assert sorted(taken) == ["a.txt", "sub/b.txt", "sub/deeper/c.txt"]
    assert count_untaken(tmp_path, taken) == 0
    (tmp_path / "sub" / "b.txt").write_text("changed, longer")
    (tmp_path / "new.txt").write_text("new")
    assert count_untaken(tmp_path, taken) == 2
    assert count_untaken(tmp_path / "missing", taken) == 0
