"""One set of names: CLI flags, JOBTAIL_* variables and Settings fields."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from jobtail.cli import main
from jobtail.settings import Settings, redact_url


def test_every_setting_is_a_serve_flag_and_documented() -> None:
    help_text = CliRunner().invoke(main, ["serve", "--help"], terminal_width=200).output
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"--{name.replace('_', '-')}" in help_text
        assert f"JOBTAIL_{name.upper()}" in help_text
        assert f"JOBTAIL_{name.upper()}" in readme, f"README does not document JOBTAIL_{name.upper()}"


def test_environment_and_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JOBTAIL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("JOBTAIL_SEAL_BYTES", "1234")
    s = Settings()
    assert s.seal_bytes == 1234
    assert s.database_url == f"sqlite:///{tmp_path / 'jobtail.db'}"
    assert s.blob_url == (tmp_path / "blobs").as_uri()
    assert Settings(seal_bytes=99).seal_bytes == 99


def test_invalid_settings_are_usage_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path), "--preview-bytes", "9999999999"])
    assert result.exit_code == 2
    assert "preview_bytes" in result.output


@pytest.mark.parametrize("roots", ["/", "{data}", "{data}/logs", "{parent}"])
def test_an_export_root_may_not_be_slash_nor_touch_the_data_directory(tmp_path: Path, roots: str) -> None:
    data = tmp_path / "data"
    with pytest.raises(ValueError, match="export root"):
        Settings(data_dir=data, export_roots=f"/srv/ok:{roots.format(data=data, parent=tmp_path)}")
    assert Settings(data_dir=data, export_roots=f"/srv/ok:{tmp_path}/exports").export_root_paths == (
        Path("/srv/ok"), tmp_path / "exports")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://jobtail:s3cr%40t@db.example:5432/jobtail", "postgresql://jobtail:***@db.example:5432/jobtail"),
        ("postgresql://:pw@db/x", "postgresql://:***@db/x"),
        ("postgresql://jobtail@db/x", "postgresql://jobtail@db/x"),
        ("sqlite:////var/lib/jobtail/jobtail.db", "sqlite:////var/lib/jobtail/jobtail.db"),
        ("s3://bucket/prefix?endpoint=http://127.0.0.1:8333", "s3://bucket/prefix?endpoint=http://127.0.0.1:8333"),
    ],
)
def test_urls_are_printed_without_their_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_an_export_root_is_checked_where_the_data_directory_really_is(tmp_path: Path) -> None:
    real = tmp_path / "disk" / "jobtail"
    real.mkdir(parents=True)
    (tmp_path / "data").symlink_to(real)  # --data-dir names a link; the root holds its target
    with pytest.raises(ValueError, match="export root"):
        Settings(data_dir=tmp_path / "data", export_roots=str(tmp_path / "disk"))


@pytest.mark.parametrize(("entry", "problem"), [
    ("ftp://logs/x", "scheme"),
    ("s3://Logs/x", "bucket name"),
    ("s3://logs-{project_id}/x", "in the prefix only"),
    ("s3://segments/{project_id}/", "segment store"),  # a project named "blobs" would write among them
    ("s3://segments/", "segment store"),
    ("s3://segments/blobs/run", "segment store"),
])
def test_an_export_obs_url_must_be_one_and_may_not_reach_the_segment_store(tmp_path: Path, entry: str,
                                                                            problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Settings(data_dir=tmp_path, blob_url="s3://segments/blobs?endpoint=http://127.0.0.1:1",
                 export_obs_urls=f"s3://logs/ok, {entry}")


def test_export_obs_urls_are_a_comma_separated_list(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, blob_url="s3://segments/blobs?endpoint=http://127.0.0.1:1",
                 export_obs_urls=" s3://logs/{project_id}/ ,, obs://segments/exports/ ")
    assert s.export_obs_url_list == ("s3://logs/{project_id}/", "obs://segments/exports/")
    assert Settings(data_dir=tmp_path).export_obs_url_list == ()


@pytest.mark.parametrize("blob_url", ["s3://segments/bl%6Fbs?endpoint=http://127.0.0.1:1", "s3://segments/%2Fblobs"])
def test_the_segment_store_is_found_as_it_reads_its_url(tmp_path: Path, blob_url: str) -> None:
    """Percent-encoded, the segment store's prefix is still `blobs/`, so no export may reach it."""
    with pytest.raises(ValueError, match="segment store"):
        Settings(data_dir=tmp_path, blob_url=blob_url, export_obs_urls="s3://segments/blobs/{project_id}/")


def test_an_export_obs_url_must_hold_the_longest_project_id(tmp_path: Path) -> None:
    long_prefix = "x" * (1024 - len("s3://logs/") - 20)
    with pytest.raises(ValueError, match="too long"):
        Settings(data_dir=tmp_path, export_obs_urls=f"s3://logs/{long_prefix}/{{project_id}}/")
