"""jobtail.auth.signing against CONTRACT §7.2 and against the official huaweicloudsdkcore signer.

The SDK side builds an `SdkRequest` the way `huaweicloudsdkcore.client.Client` does (path params
quoted with `quote(v, safe='')`, query params as (key, value) tuples), signs it with the SDK's own
`Signer`, then `requests` prepares it exactly as the SDK's HTTP client would send it; the raw
request line and the header bytes of that prepared request are what a server receives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobtail.auth.signing import (
    EMPTY_SHA256,
    SignedAuthorization,
    canonical_query,
    canonical_request,
    canonical_uri,
    decode_header_value,
    parse_authorization,
    parse_sdk_date,
    payload_hash,
    sign_request,
    signature,
    string_to_sign,
    verify,
    within_skew,
)

AK, SK = "MYAK", "MYSK"
DATE = "20240101T000000Z"
HOST = "127.0.0.1:8080"
VECTOR_HEADERS = {
    "content-type": "application/json",
    "host": HOST,
    "user-agent": "test-agent",
    "x-project-id": "proj123",
    "x-sdk-date": DATE,
}
VECTOR_SIGNED = ("content-type", "host", "user-agent", "x-project-id", "x-sdk-date")


# --------------------------------------------------------------------------- SDK plumbing


def sdk_sign(method: str, resource_path: str, query: list[tuple[str, Any]], headers: Mapping[str, str],
             body: bytes | None, ak: str = AK, sk: str = SK) -> SdkRequest:
    request = SdkRequest(method=method, schema="http", host=HOST, resource_path=resource_path,
                         query_params=query, header_params=dict(headers), body=body)
    return Signer(BasicCredentials(ak, sk)).sign(request)


def on_the_wire(signed: SdkRequest) -> tuple[str, bytes, bytes, dict[str, str], bytes]:
    """(method, raw path, raw query, lowercase headers decoded as UTF-8, body) as a server sees them."""
    prepared = requests.Request(signed.method, signed.url, headers=signed.header_params,
                                data=signed.body).prepare()
    path, _, query = prepared.path_url.partition("?")
    headers = {name.lower(): decode_header_value(value.encode("latin-1"))
               for name, value in prepared.headers.items()}
    body = prepared.body if isinstance(prepared.body, bytes) else (prepared.body or "").encode()
    return prepared.method or "", path.encode("ascii"), query.encode("ascii"), headers, body


def server_accepts(method: str, path: bytes | str, query: bytes | str, headers: Mapping[str, str],
                   body: bytes, sk: str = SK, now: datetime | None = None) -> bool:
    auth = parse_authorization(headers["authorization"])
    assert auth is not None and auth.access_key == AK
    digest = payload_hash(body, headers.get("x-sdk-content-sha256"))
    return verify(method, path, query, headers, digest, auth, sk, now=now)


# --------------------------------------------------------------------------- §7.2 test vectors


def test_vector_get_with_query() -> None:
    query = "order=desc&lines=50&base_line=1700000000000000001"  # unsorted on purpose
    canonical = canonical_request("get", "/v2/proj123/training-jobs/job-1/logs/worker-0", query,
                                  VECTOR_HEADERS, VECTOR_SIGNED, payload_hash(b"", None))
    assert canonical == (
        "GET\n"
        "/v2/proj123/training-jobs/job-1/logs/worker-0/\n"
        "base_line=1700000000000000001&lines=50&order=desc\n"
        "content-type:application/json\n"
        "host:127.0.0.1:8080\n"
        "user-agent:test-agent\n"
        "x-project-id:proj123\n"
        "x-sdk-date:20240101T000000Z\n"
        "\n"
        "content-type;host;user-agent;x-project-id;x-sdk-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    sts = string_to_sign(DATE, canonical)
    assert sts == ("SDK-HMAC-SHA256\n20240101T000000Z\n"
                   "67135ff5f1e38f3437355d450b6b2fa7803b2d2ba3d7cd9b129bd3149995b1ec")
    sig = "90dd6dc60c6b08e90efa45d8301fc690777c5ae9bd07edb9b063e1cbb6ace7e8"
    assert signature(SK, sts) == sig
    auth = SignedAuthorization(AK, VECTOR_SIGNED, sig)
    assert verify("GET", "/v2/proj123/training-jobs/job-1/logs/worker-0", query, VECTOR_HEADERS,
                  EMPTY_SHA256, auth, SK)
    assert not verify("GET", "/v2/proj123/training-jobs/job-1/logs/worker-1", query, VECTOR_HEADERS,
                      EMPTY_SHA256, auth, SK)


def test_vector_post_actions_with_body() -> None:
    body = b'{"action_type": "terminate"}'
    headers = {**VECTOR_HEADERS, "content-type": "application/json;charset=utf-8"}
    digest = payload_hash(body, None)
    assert digest == hashlib.sha256(body).hexdigest()
    canonical = canonical_request("POST", b"/v2/proj123/training-jobs/job-1/actions", b"", headers,
                                  VECTOR_SIGNED, digest)
    assert canonical.splitlines()[1:3] == ["/v2/proj123/training-jobs/job-1/actions/", ""]
    sig = "763558b272d9d86b89ca4235ae10fffe6e0e697167db3183fef76c8cf8c49608"
    assert signature(SK, string_to_sign(DATE, canonical)) == sig
    auth = SignedAuthorization(AK, VECTOR_SIGNED, sig)
    assert verify("POST", b"/v2/proj123/training-jobs/job-1/actions", b"", headers, digest, auth, SK)
    other = payload_hash(b'{"action_type": "terminatE"}', None)
    assert not verify("POST", b"/v2/proj123/training-jobs/job-1/actions", b"", headers, other, auth, SK)


def test_vector_put_octet_stream_unsigned_payload() -> None:
    added = sign_request("PUT", "/v2/proj123/x", {"Content-Type": "application/octet-stream",
                                                  "Host": HOST, "X-Sdk-Date": DATE}, b"\x00\x01", AK, SK)
    assert added["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    assert added["Authorization"] == (
        "SDK-HMAC-SHA256 Access=MYAK, SignedHeaders=content-type;host;x-sdk-content-sha256;x-sdk-date, "
        "Signature=2cef0f23ba9f4bd12fd8dba8b6684ef0aedeaad2732b157ad89be67fe8917604")
    headers = {"content-type": "application/octet-stream", "host": HOST, "x-sdk-date": DATE,
               "x-sdk-content-sha256": "UNSIGNED-PAYLOAD"}
    canonical = canonical_request("PUT", "/v2/proj123/x", "", headers, sorted(headers),
                                  payload_hash(b"\x00\x01", "UNSIGNED-PAYLOAD"))
    assert canonical.endswith("\ncontent-type;host;x-sdk-content-sha256;x-sdk-date\nUNSIGNED-PAYLOAD")


@pytest.mark.parametrize(("method", "path", "query", "headers", "body", "expected"), [
    ("GET", "/v2/proj123/training-jobs/job-1/logs/worker-0",
     [("order", "desc"), ("lines", 50), ("base_line", "1700000000000000001")], VECTOR_HEADERS, None,
     "90dd6dc60c6b08e90efa45d8301fc690777c5ae9bd07edb9b063e1cbb6ace7e8"),
    ("POST", "/v2/proj123/training-jobs/job-1/actions", [],
     {**VECTOR_HEADERS, "content-type": "application/json;charset=utf-8"}, b'{"action_type": "terminate"}',
     "763558b272d9d86b89ca4235ae10fffe6e0e697167db3183fef76c8cf8c49608"),
    ("PUT", "/v2/proj123/x", [], {"Content-Type": "application/octet-stream", "X-Sdk-Date": DATE},
     b"\x00\x01", "2cef0f23ba9f4bd12fd8dba8b6684ef0aedeaad2732b157ad89be67fe8917604"),
])
def test_vectors_are_what_the_sdk_produces(method: str, path: str, query: list[tuple[str, Any]],
                                           headers: dict[str, str], body: bytes | None, expected: str) -> None:
    signed = sdk_sign(method, path, query, headers, body)
    assert signed.header_params["Authorization"].endswith("Signature=" + expected)
    assert server_accepts(*on_the_wire(signed))


# --------------------------------------------------------------------------- canonical pieces


def test_encoded_slash_is_a_separator() -> None:
    resource = "/v2/proj123/training-jobs/" + quote("job 1/ü~x", safe="") + "/tasks"
    assert resource == "/v2/proj123/training-jobs/job%201%2F%C3%BC~x/tasks"
    assert canonical_uri(resource) == "/v2/proj123/training-jobs/job%201/%C3%BC~x/tasks/"
    assert canonical_uri(b"/a/job%201%2f%c3%bc%7Ex") == "/a/job%201/%C3%BC~x/"  # any case, any escapes
    signed = sdk_sign("GET", resource, [], {"X-Sdk-Date": DATE}, None)
    method, path, query, headers, body = on_the_wire(signed)
    assert path == b"/v2/proj123/training-jobs/job%201%2F%C3%BC~x/tasks"
    assert server_accepts(method, path, query, headers, body)
    # the quirk means a real separator, or a trailing slash, signs the same
    assert server_accepts(method, b"/v2/proj123/training-jobs/job%201/%C3%BC~x/tasks/", query, headers, body)


def test_canonical_uri_reencodes_everything_but_unreserved() -> None:
    assert canonical_uri("/") == "/"
    assert canonical_uri("") == "/"
    assert canonical_uri("/a+b/c%2Bd/e f/%7e/-._!*'()") == "/a%2Bb/c%2Bd/e%20f/~/-._%21%2A%27%28%29/"
    assert canonical_uri("/v2//x/") == "/v2//x/"


def test_query_unsorted_duplicates_and_empty_values() -> None:
    assert canonical_query("b=2&a=1&a=0&c&d=") == "a=0&a=1&b=2&c=&d="
    assert canonical_query("") == ""
    assert canonical_query("&a=1&&") == "a=1"
    assert canonical_query("x=a+b&y=a%20b&z=%2b&w=a=b") == "w=a%3Db&x=a%2Bb&y=a%20b&z=%2B"
    assert canonical_query("k=%C3%BC&k=%7E&k=%2F") == "k=%2F&k=~&k=%C3%BC"
    # sorted on decoded text, as the SDK sorts its Python strings: "a." < "a/" although "%2F" < "."
    assert canonical_query(b"a.=1&a%2F=2") == "a.=1&a%2F=2"
    assert canonical_query(b"a%2F=2&a.=1") == "a.=1&a%2F=2"
    assert canonical_query("k=9&k=10") == "k=10&k=9"
    assert canonical_query("k=9&k=10&a=1", keep_value_order=True) == "a=1&k=9&k=10"


def test_query_order_on_the_wire_does_not_matter() -> None:
    added = sign_request("GET", "/v2/p/x?b=2&a=%20&a=1", {"Host": HOST}, None, AK, SK)
    headers = {"host": HOST, "x-sdk-date": added["X-Sdk-Date"], "authorization": added["Authorization"]}
    for query in ("a=%20&a=1&b=2", "b=2&a=1&a=%20", "a=1&b=2&a=%20"):
        assert server_accepts("GET", "/v2/p/x", query, headers, b"")
    for query in ("a=%20&a=1", "a=+&a=1&b=2", "a=%20&a=1&b=2&b=2", "a=%20&a=1&b=2&c"):
        assert not server_accepts("GET", "/v2/p/x", query, headers, b"")


def test_numeric_repeated_query_values_keep_sdk_order() -> None:
    """The SDK sorts a repeated key's values as Python objects (9 < 10) and sends that order."""
    signed = sdk_sign("GET", "/v2/p/x", [("k", [10, 9]), ("a", True)], {"X-Sdk-Date": DATE}, None)
    assert signed.uri == "/v2/p/x?a=true&k=9&k=10"
    assert server_accepts(*on_the_wire(signed))


def test_signed_headers_are_used_in_the_order_given() -> None:
    canonical = canonical_request("get", "/", "", {"host": " h ", "x-sdk-date": DATE, "x-b": "b"},
                                  ("x-sdk-date", "host"), EMPTY_SHA256)
    assert canonical == f"GET\n/\n\nx-sdk-date:{DATE}\nhost:h\n\nx-sdk-date;host\n{EMPTY_SHA256}"
    with pytest.raises(KeyError):
        canonical_request("GET", "/", "", {"host": "h"}, ("host", "x-sdk-date"), EMPTY_SHA256)


def test_payload_hash() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    assert payload_hash(b"", None) == EMPTY_SHA256
    assert payload_hash(b"", "UNSIGNED-PAYLOAD") == EMPTY_SHA256  # empty body wins, as in the SDK
    assert payload_hash(b"x", None) == digest
    assert payload_hash(b"x", "") == digest
    assert payload_hash(b"x", "UNSIGNED-PAYLOAD") == "UNSIGNED-PAYLOAD"
    assert payload_hash(b"x", digest.upper()) == digest.upper()  # a truthful hash is used literally
    assert payload_hash(b"x", EMPTY_SHA256) == digest  # a lying one is not


@pytest.mark.parametrize("value", [
    "SDK-HMAC-SHA256 Access=MYAK, SignedHeaders=host;x-sdk-date, Signature=" + "a" * 64,
    "  SDK-HMAC-SHA256  Access=MYAK,SignedHeaders=host;x-sdk-date ,\tSignature=" + "a" * 64 + " ",
])
def test_parse_authorization_accepts(value: str) -> None:
    assert parse_authorization(value) == SignedAuthorization("MYAK", ("host", "x-sdk-date"), "a" * 64)


@pytest.mark.parametrize("value", [
    "", "SDK-HMAC-SHA256", "Bearer abc",
    "SDK-HMAC-SM3 Access=MYAK, SignedHeaders=host, Signature=" + "a" * 64,
    "V11-HMAC-SHA256 Credential=MYAK/20240101/r/s, SignedHeaders=host, Signature=" + "a" * 64,
    "sdk-hmac-sha256 Access=MYAK, SignedHeaders=host, Signature=" + "a" * 64,
    "SDK-HMAC-SHA256Access=MYAK, SignedHeaders=host, Signature=" + "a" * 64,
    "SDK-HMAC-SHA256 Access=, SignedHeaders=host, Signature=" + "a" * 64,
    "SDK-HMAC-SHA256 Access=MY AK, SignedHeaders=host, Signature=" + "a" * 64,
    "SDK-HMAC-SHA256 Access=MYAK, SignedHeaders=, Signature=" + "a" * 64,
    "SDK-HMAC-SHA256 Access=MYAK, SignedHeaders=host;;x-sdk-date, Signature=" + "a" * 64,
    "SDK-HMAC-SHA256 Access=MYAK, SignedHeaders=Host, Signature=" + "a" * 64,
    "SDK-HMAC-SHA256 Access=MYAK, SignedHeaders=host, Signature=" + "A" * 64,
    "SDK-HMAC-SHA256 Access=MYAK, SignedHeaders=host, Signature=" + "a" * 63,
    "SDK-HMAC-SHA256 Access=MYAK, SignedHeaders=host, Signature=" + "a" * 65,
    "SDK-HMAC-SHA256 SignedHeaders=host, Access=MYAK, Signature=" + "a" * 64,
    "SDK-HMAC-SHA256 Access=MYAK, SignedHeaders=host, Signature=" + "a" * 64 + ", Extra=1",
    "SDK-HMAC-SHA256 Access=MYAK\n, SignedHeaders=host, Signature=" + "a" * 64,
])
def test_parse_authorization_rejects(value: str) -> None:
    assert parse_authorization(value) is None


def test_sdk_dates_and_skew() -> None:
    parsed = parse_sdk_date(DATE)
    assert parsed == datetime(2024, 1, 1, tzinfo=UTC)
    for bad in ("", "2024011T000000Z", "20240101T000000", "20240101T000000z", "20240101 000000Z",
                "20241301T000000Z", "20240101T000000Z ", "2024-01-01T00:00:00Z"):
        assert parse_sdk_date(bad) is None, bad
    assert parsed is not None
    assert within_skew(parsed, parsed + timedelta(minutes=15))
    assert within_skew(parsed, parsed - timedelta(minutes=15))
    assert not within_skew(parsed, parsed + timedelta(minutes=15, seconds=1))
    assert not within_skew(parsed, parsed - timedelta(minutes=15, seconds=1))
    assert within_skew(parsed, datetime(2024, 1, 1, 0, 1), timedelta(minutes=1))  # naive means UTC
    assert not within_skew(parsed, datetime(2024, 1, 1, 0, 2), timedelta(minutes=1))


def test_verify_requirements() -> None:
    headers = {"host": HOST, "x-sdk-date": DATE, "x-a": "1"}

    def signed_with(names: tuple[str, ...], hdrs: Mapping[str, str] = headers) -> SignedAuthorization:
        complete = {**headers, **hdrs}
        canonical = canonical_request("GET", "/x", "", complete, names, EMPTY_SHA256)
        return SignedAuthorization(AK, names, signature(SK, string_to_sign(complete["x-sdk-date"], canonical)))

    good = signed_with(("host", "x-a", "x-sdk-date"))
    assert verify("GET", "/x", "", headers, EMPTY_SHA256, good, SK)
    assert not verify("GET", "/x", "", headers, EMPTY_SHA256, good, "other-sk")
    assert not verify("GET", "/x", "", {k: v for k, v in headers.items() if k != "x-a"}, EMPTY_SHA256, good, SK)
    assert not verify("GET", "/x", "", headers, EMPTY_SHA256, signed_with(("x-a", "x-sdk-date")), SK)
    assert not verify("GET", "/x", "", headers, EMPTY_SHA256, signed_with(("host", "x-a")), SK)
    lenient = signed_with(("host", "x-sdk-date"), {"x-sdk-date": "2024011T000000Z"})
    assert not verify("GET", "/x", "", {**headers, "x-sdk-date": "2024011T000000Z"}, EMPTY_SHA256, lenient, SK)
    now = datetime(2024, 1, 1, 0, 15, tzinfo=UTC)
    assert verify("GET", "/x", "", headers, EMPTY_SHA256, good, SK, now=now)
    assert not verify("GET", "/x", "", headers, EMPTY_SHA256, good, SK, now=now + timedelta(seconds=1))


def test_sdk_generated_date_is_within_skew_of_now() -> None:
    signed = sdk_sign("GET", "/v2/p/x", [], {}, None)
    assert server_accepts(*on_the_wire(signed), now=datetime.now(UTC))


# --------------------------------------------------------------------------- properties vs the SDK

segments = st.text(max_size=10).filter(lambda s: s not in (".", ".."))  # urllib3 drops dot segments
keys = st.text(max_size=6)
scalars = st.one_of(st.text(max_size=8), st.integers(-10**6, 10**6), st.booleans())
values = st.one_of(scalars, st.lists(st.text(max_size=5), min_size=2, max_size=4),
                   st.lists(st.integers(0, 1000), min_size=2, max_size=4))
header_text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=16)
content_types = st.sampled_from([None, "application/json", "application/json;charset=utf-8",
                                 "application/bson", "application/octet-stream", "text/plain", "Application/JSON"])
methods = ("GET", "POST", "PUT", "DELETE", "PATCH")


@st.composite
def sdk_requests(draw: st.DrawFn, string_values_only: bool = False) -> dict[str, Any]:
    path = "/v2/proj123/training-jobs/" + "/".join(quote(s, safe="") for s in draw(st.lists(segments, max_size=4)))
    params = draw(st.dictionaries(keys, st.text(max_size=8) | st.lists(st.text(max_size=5), min_size=2, max_size=4)
                                  if string_values_only else values, max_size=5))
    query: list[tuple[str, Any]] = []
    for key, value in params.items():
        if isinstance(value, list) and draw(st.booleans()):
            query.extend((key, v) for v in value)  # what the client's "multi" collection format does
        else:
            query.append((key, value))
    headers = {"User-Agent": draw(header_text), "X-Project-Id": "proj123", "X-Custom": draw(header_text),
               "X-Trace_Id": draw(header_text), "X-Sdk-Date": DATE}
    content_type = draw(content_types)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return {"method": draw(st.sampled_from(methods)), "path": path, "query": query, "headers": headers,
            "body": draw(st.binary(max_size=40))}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sdk_requests())
def test_sdk_signatures_verify_and_tampering_fails(req: dict[str, Any]) -> None:
    signed = sdk_sign(req["method"], req["path"], req["query"], req["headers"], req["body"])
    method, path, query, headers, body = on_the_wire(signed)
    assert server_accepts(method, path, query, headers, body)
    assert not server_accepts(method, path, query, headers, body, sk=SK + "x")

    for other in methods:
        assert server_accepts(other, path, query, headers, body) == (other == method)
    assert not server_accepts(method, path + b"x", query, headers, body)
    assert not server_accepts(method, path + b"/x", query, headers, body)
    assert not server_accepts(method, path, query + (b"&" if query else b"") + b"tampered=1", headers, body)
    if query:
        assert not server_accepts(method, path, query.rpartition(b"&")[0], headers, body)
    auth = parse_authorization(headers["authorization"])
    assert auth is not None
    assert "x-trace_id" not in auth.signed_headers and "accept" not in auth.signed_headers
    for name in headers:
        tampered = {**headers, name: headers[name] + "x"}
        if name == "authorization":
            continue
        assert server_accepts(method, path, query, tampered, body) == (name not in auth.signed_headers), name
    unsigned_body = "x-sdk-content-sha256" in headers
    assert unsigned_body == (req["headers"].get("Content-Type", "application/json")[:16]
                             not in ("application/json", "application/bson"))
    assert server_accepts(method, path, query, headers, body + b"x") == (unsigned_body and body != b"")


@settings(max_examples=200, deadline=None)
@given(sdk_requests(string_values_only=True), st.booleans())
def test_sign_request_matches_the_sdk(req: dict[str, Any], with_date: bool) -> None:
    headers = {**req["headers"], "Host": HOST}
    if not with_date:
        del headers["X-Sdk-Date"]
    signed = sdk_sign(req["method"], req["path"], req["query"], headers, req["body"])
    date = signed.header_params["X-Sdk-Date"]
    added = sign_request(req["method"], signed.uri, headers, req["body"], AK, SK,
                         now=datetime.strptime(date, "%Y%m%dT%H%M%SZ"))
    assert added["X-Sdk-Date"] == date
    assert added["Authorization"] == signed.header_params["Authorization"]
    assert added.get("X-Sdk-Content-Sha256") == signed.header_params.get("X-Sdk-Content-Sha256")
    wire = {name.lower(): value for name, value in {**headers, **added}.items()}
    path, _, query = signed.uri.partition("?")
    assert server_accepts(req["method"], path, query, wire, req["body"])


def test_sign_request_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="Host"):
        sign_request("GET", "/x", {}, None, AK, SK)
    with pytest.raises(ValueError, match="duplicate"):
        sign_request("GET", "/x", {"Host": HOST, "host": HOST}, None, AK, SK)
    with pytest.raises(ValueError, match="start with"):
        sign_request("GET", "http://h/x", {"Host": HOST}, None, AK, SK)
