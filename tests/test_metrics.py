"""The metrics registry (`jobtail.metrics`): every call moves its metric by what it says, and the
text parses; in the test process the registry is the in-memory one (one process)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from jobtail import metrics


def samples() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def get(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_each_call_moves_its_metric() -> None:
    before = samples()
    metrics.STORE.appended(100)
    metrics.STORE.appended(23)
    metrics.STORE.sealed(123, 0.02)
    metrics.STORE.preview_cache(True)
    metrics.STORE.preview_cache(False)
    metrics.STORE.preview_cache(False)
    metrics.segment_cache_lookup(True, 5)
    metrics.segment_cache_lookup(False, 2)
    metrics.refused("streams")
    metrics.locked_out("password")
    metrics.observe_request("Health", 200, 0.0004)
    metrics.observe_request("Health", 200, 0.2)
    metrics.follow_stream_opened()
    metrics.follow_stream_opened()
    metrics.follow_stream_closed()
    metrics.executor_tasks(pending=4, running=3)
    after = samples()

    def moved(name: str, **labels: str) -> float:
        return get(after, name, **labels) - get(before, name, **labels)

    assert moved("jobtail_appends_total") == 2
    assert moved("jobtail_ingested_bytes_total") == 123
    assert moved("jobtail_seal_duration_seconds_count") == 1
    assert moved("jobtail_seal_duration_seconds_bucket", le="0.025") == 1
    assert moved("jobtail_seal_duration_seconds_bucket", le="0.01") == 0
    assert moved("jobtail_sealed_bytes_total") == 123
    assert moved("jobtail_preview_cache_lookups_total", result="hit") == 1
    assert moved("jobtail_preview_cache_lookups_total", result="miss") == 2
    assert moved("jobtail_segment_cache_blocks_total", result="hit") == 5
    assert moved("jobtail_segment_cache_blocks_total", result="miss") == 2
    assert moved("jobtail_limit_refusals_total", limit="streams") == 1
    assert moved("jobtail_lockouts_total", kind="password") == 1
    assert moved("jobtail_http_request_duration_seconds_count", operation="Health", status="200") == 2
    assert moved("jobtail_http_request_duration_seconds_bucket", operation="Health", status="200", le="0.0005") == 1
    assert moved("jobtail_http_request_duration_seconds_bucket", operation="Health", status="200", le="0.25") == 2
    assert moved("jobtail_follow_streams") == 1
    assert get(after, "jobtail_executor_tasks", phase="pending") == 4
    assert get(after, "jobtail_executor_tasks", phase="running") == 3
    metrics.follow_stream_closed()
