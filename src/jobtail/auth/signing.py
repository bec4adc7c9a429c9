"""The Huawei Cloud "SDK-HMAC-SHA256" AK/SK request signature (CONTRACT §7.2), as pure functions.

Server side: `parse_authorization` the header, look up the secret key, compute `payload_hash` (or
`payload_hash_of_digest` from a hash taken while the body arrived), then
`verify` with the *raw* request path and query (before any framework decoding) and the received
header values keyed by lowercase name. Client side: `sign_request` returns the headers to add.

Behaviour follows the official Python SDK (huaweicloudsdkcore 3.1.219), including its quirks:
an encoded slash (`%2F`) counts as a path separator, a trailing `/` is always appended to the
canonical URI (so `/a` and `/a/` sign alike), and query parameters are sorted on their *decoded*
form. Nothing here imports a web framework or touches the clock unless asked to.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

ALGORITHM = "SDK-HMAC-SHA256"
SDK_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
DEFAULT_SKEW = timedelta(minutes=15)
# Content types whose body the SDK signs; any other *present* type gets UNSIGNED-PAYLOAD.
_SIGNED_BODY_TYPES = ("application/json", "application/bson")

_SDK_DATE_RE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z")
_TOKEN = r"[!#$%&'*+.^`|~0-9a-z-]+"  # a lowercase HTTP header name
_AUTH_RE = re.compile(
    r"SDK-HMAC-SHA256[ \t]+Access=([^\s,]+)[ \t]*,[ \t]*"
    rf"SignedHeaders=({_TOKEN}(?:;{_TOKEN})*)[ \t]*,[ \t]*"
    r"Signature=([0-9a-f]{64})"
)


@dataclass(frozen=True, slots=True)
class SignedAuthorization:
    """The three fields of an `SDK-HMAC-SHA256` Authorization header; names are lowercase."""

    access_key: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> SignedAuthorization | None:
    """Parse `SDK-HMAC-SHA256 Access=AK, SignedHeaders=h1;h2, Signature=<64 hex>`, or return None.

    Tolerated: surrounding spaces/tabs, several spaces/tabs after the algorithm and around the
    commas. Anything else (another algorithm, other field order, uppercase hex or header names,
    empty header names, extra fields) is rejected with None.
    """
    match = _AUTH_RE.fullmatch(value.strip(" \t"))
    if match is None:
        return None
    access_key, names, sig = match.groups()
    return SignedAuthorization(access_key, tuple(names.split(";")), sig)


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def _encode(value: str) -> str:
    """RFC 3986 encoding: only A-Z a-z 0-9 - . _ ~ stay literal (UTF-8 for the rest)."""
    return quote(value, safe="~")


def canonical_uri(raw_path: bytes | str) -> str:
    """Percent-decode the whole raw path, split on `/` (so `%2F` separates too), re-encode each
    segment, rejoin, and end with `/`."""
    segments = unquote(_text(raw_path)).split("/")
    uri = "/".join(_encode(segment) for segment in segments)
    return uri if uri.endswith("/") else uri + "/"


def _query_pairs(raw_query: bytes | str) -> list[tuple[str, str]]:
    pairs = []
    for piece in _text(raw_query).split("&"):
        if piece:  # "a=1&&b=2" and a trailing "&" carry no parameter
            key, _, value = piece.partition("=")  # no "=" means an empty value
            pairs.append((unquote(key), unquote(value)))  # `+` stays a plus sign
    return pairs


def canonical_query(raw_query: bytes | str, *, keep_value_order: bool = False) -> str:
    """Canonical query string from the raw query (without `?`).

    Pairs split on `&` and the first `=`, percent-decoded (`unquote`, not `unquote_plus`), sorted by
    decoded key then decoded value, re-encoded and joined as `k=v&k=v`. With `keep_value_order`
    only keys are sorted and repeated keys keep their received order: the SDK sorts a repeated
    key's values by their Python type (numbers numerically) and sends them in that order.
    """
    pairs = _query_pairs(raw_query)
    pairs.sort(key=(lambda pair: pair[0]) if keep_value_order else None)
    return "&".join(f"{_encode(key)}={_encode(value)}" for key, value in pairs)


def canonical_request(
    method: str,
    raw_path: bytes | str,
    raw_query: bytes | str,
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    payload_hash: str,
    *,
    keep_value_order: bool = False,
) -> str:
    """The six-line canonical request of §7.2.

    `headers` maps lowercase names to received values, decoded from the wire as UTF-8 (see
    `decode_header_value`); each signed value is stripped of surrounding whitespace.
    `signed_headers` is used in the given order. Raises KeyError if a signed header is missing.
    """
    lines = "".join(f"{name}:{headers[name].strip()}\n" for name in signed_headers)
    return "\n".join((
        method.upper(),
        canonical_uri(raw_path),
        canonical_query(raw_query, keep_value_order=keep_value_order),
        lines,
        ";".join(signed_headers),
        payload_hash,
    ))


def decode_header_value(raw: bytes) -> str:
    """Header bytes as the SDK signed them: it sends UTF-8 (frameworks often decode latin-1)."""
    return raw.decode("utf-8", "replace")


def payload_hash(body: bytes, content_sha256_header: str | None) -> str:
    """Hash line of the canonical request.

    Empty body: SHA-256 of "" whatever the header says. Else a non-empty `X-Sdk-Content-Sha256`
    value is used literally when it is `UNSIGNED-PAYLOAD` (the body is then not covered) or the
    body's true SHA-256 in any case. Otherwise the lowercase hex SHA-256 of the body is returned,
    so a header claiming a wrong hash makes the signature check fail instead of being trusted.
    A non-empty body under `UNSIGNED-PAYLOAD` is not hashed (0.5 ms per MiB saved per request).
    """
    if body and content_sha256_header == UNSIGNED_PAYLOAD:
        return UNSIGNED_PAYLOAD
    return payload_hash_of_digest(hashlib.sha256(body).hexdigest(), content_sha256_header)


def payload_hash_of_digest(body_sha256: str, content_sha256_header: str | None) -> str:
    """`payload_hash` from the body's lowercase hex SHA-256 instead of the body, for a server
    that hashes the body while it arrives."""
    if body_sha256 == EMPTY_SHA256:
        return EMPTY_SHA256
    if content_sha256_header and (
        content_sha256_header == UNSIGNED_PAYLOAD or content_sha256_header.lower() == body_sha256
    ):
        return content_sha256_header
    return body_sha256


def string_to_sign(sdk_date: str, canonical: str) -> str:
    """`SDK-HMAC-SHA256\\n<X-Sdk-Date>\\n<hex SHA-256 of the UTF-8 canonical request>`."""
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def signature(secret_key: str, string_to_sign: str) -> str:
    """Lowercase hex HMAC-SHA256 keyed directly with the UTF-8 secret key (no key derivation)."""
    key, message = secret_key.encode("utf-8"), string_to_sign.encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def parse_sdk_date(value: str) -> datetime | None:
    """Parse an `X-Sdk-Date` (`20240101T000000Z`) into an aware UTC datetime; None unless it is
    in exactly that form (ASCII digits, every field zero-padded, a real date and time)."""
    match = _SDK_DATE_RE.fullmatch(value)  # a regex, not strptime: this runs on every request
    if match is None or match[1] < "1000":
        return None
    try:
        year, month, day, hour, minute, second = (int(field) for field in match.groups())
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None


def within_skew(sdk_date: datetime, now: datetime, skew: timedelta = DEFAULT_SKEW) -> bool:
    """True when `sdk_date` is at most `skew` before or after `now` (naive values count as UTC)."""
    sdk_date = sdk_date if sdk_date.tzinfo else sdk_date.replace(tzinfo=UTC)
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    return abs(now - sdk_date) <= skew


def verify(
    method: str,
    raw_path: bytes | str,
    raw_query: bytes | str,
    headers: Mapping[str, str],
    payload_hash: str,
    authorization: SignedAuthorization,
    secret_key: str,
    *,
    now: datetime | None = None,
    skew: timedelta = DEFAULT_SKEW,
) -> bool:
    """True iff `authorization.signature` is the signature of this request under `secret_key`.

    Requires `host` and `x-sdk-date` among the signed headers, every signed header present in
    `headers` (lowercase names), and a well-formed `x-sdk-date`; when `now` is given the date must
    also be within `skew` of it. The query is tried sorted by key and value and, if that differs,
    with repeated keys in received order (see `canonical_query`). Comparison is constant-time.
    """
    signed = authorization.signed_headers
    if "host" not in signed or "x-sdk-date" not in signed or any(n not in headers for n in signed):
        return False
    sdk_date = headers["x-sdk-date"].strip()
    parsed = parse_sdk_date(sdk_date)
    if parsed is None or (now is not None and not within_skew(parsed, now, skew)):
        return False
    orders = [False]
    if canonical_query(raw_query, keep_value_order=True) != canonical_query(raw_query):
        orders.append(True)  # repeated keys: the SDK may have sent their values in another order
    candidates = [
        canonical_request(method, raw_path, raw_query, headers, signed, payload_hash, keep_value_order=k)
        for k in orders
    ]
    expected = [signature(secret_key, string_to_sign(sdk_date, c)) for c in candidates]
    return any([hmac.compare_digest(e, authorization.signature) for e in expected])  # noqa: C419  # every one, in constant time


def sign_request(
    method: str,
    path_and_query: str,
    headers: Mapping[str, str],
    body: bytes | str | None,
    access_key: str,
    secret_key: str,
    *,
    now: datetime | None = None,
) -> dict[str, str]:
    """Sign a request like the SDK does; return the headers to add (`X-Sdk-Date`, `Authorization`,
    and `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD` when a Content-Type is present that starts with
    neither application/json nor application/bson).

    `path_and_query` is the percent-encoded request target (`/v2/p/x?a=1`, spaces as `%20`; a `+`
    means a plus sign). `headers` must include `Host`; every header whose name has no `_` is
    signed, so send exactly these values. An existing `X-Sdk-Date` is reused, else `now` (default:
    the current UTC time) is used. A str body is signed as UTF-8.
    """
    if not path_and_query.startswith("/"):
        raise ValueError("path_and_query must start with '/'")
    path, _, query = path_and_query.partition("?")
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        if name.lower() in lowered:
            raise ValueError(f"duplicate header {name!r}")
        lowered[name.lower()] = str(value).strip()
    if "host" not in lowered:
        raise ValueError("a Host header is required")
    added: dict[str, str] = {}
    content_type = lowered.get("content-type")
    if content_type and not content_type.startswith(_SIGNED_BODY_TYPES):
        added["X-Sdk-Content-Sha256"] = UNSIGNED_PAYLOAD
    when = now or datetime.now(UTC)
    added["X-Sdk-Date"] = lowered.get("x-sdk-date") or when.strftime(SDK_DATE_FORMAT)
    lowered.update((name.lower(), value) for name, value in added.items())
    signed = sorted(name for name in lowered if "_" not in name)
    data = body.encode("utf-8") if isinstance(body, str) else (body or b"")
    digest = payload_hash(data, lowered.get("x-sdk-content-sha256"))
    canonical = canonical_request(method, path, query, lowered, signed, digest)
    sig = signature(secret_key, string_to_sign(added["X-Sdk-Date"], canonical))
    added["Authorization"] = (
        f"{ALGORITHM} Access={access_key}, SignedHeaders={';'.join(signed)}, Signature={sig}"
    )
    return added
