"""Where a job may ask its logs to be exported (jobtail.core.log_export)."""

from __future__ import annotations

import pytest

from jobtail.core.errors import InvalidJob
from jobtail.core.log_export import place_in_buckets

ALLOWED = ("s3://logs/shared", "obs://logs/teams/{project_id}/")


@pytest.mark.parametrize(("url", "project", "placed"), [
    ("obs://logs/shared", "p1", ("logs", "shared/")),
    ("s3://logs/shared/run-1/", "p1", ("logs", "shared/run-1/")),  # the scheme does not count
    ("obs://logs/teams/p1/run-1", "p1", ("logs", "teams/p1/run-1/")),
    ("obs://logs/teams/P-2", "P-2", ("logs", "teams/P-2/")),
])
def test_an_obs_url_under_an_allowed_one_is_placed(url: str, project: str, placed: tuple[str, str]) -> None:
    assert place_in_buckets(url, ALLOWED, project) == placed


@pytest.mark.parametrize(("url", "project"), [
    ("obs://logs/shared-2/run", "p1"),  # prefixes are compared by whole segments
    ("obs://logs/share", "p1"),
    ("obs://logs/teams/p2/run", "p1"),  # another project's prefix
    ("obs://logs/teams/p1-evil/run", "p1"),
    ("obs://logs/teams/", "p1"),  # above the project's own prefix
    ("obs://logs", "p1"),
    ("obs://other/shared", "p1"),
])
def test_an_obs_url_anywhere_else_is_refused(url: str, project: str) -> None:
    with pytest.raises(InvalidJob) as refused:
        place_in_buckets(url, ALLOWED, project)
    assert refused.value.field == "log_export_path.obs_url"
    assert "outside the buckets and prefixes" in refused.value.reason


def test_nothing_allowed_says_how_to_allow_it() -> None:
    with pytest.raises(InvalidJob, match="--export-obs-urls"):
        place_in_buckets("obs://logs/shared", (), "p1")


def test_a_malformed_obs_url_is_refused_before_the_allow_list() -> None:
    with pytest.raises(InvalidJob, match="scheme"):
        place_in_buckets("ftp://logs/shared", ALLOWED, "p1")
