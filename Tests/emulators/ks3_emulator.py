#!/usr/bin/env python3
"""Kingsoft Cloud KS3 emulator for tests: a KS3 front on a real S3 API (Swift's s3api).

Checks every request's KS3 "KSS V2" signature exactly as the official Python SDK builds it,
translates `x-kss-*` <-> `x-amz-*`, and forwards the request, re-signed (AWS SigV2) with the
upstream credentials, to an S3 API such as the s3api of the local Swift test server. Needs the
ks3sdk package (run it with the tests' venv python, see Tests/fuse/testvenv.py): the
signature oracle is the SDK's own `ks3.auth.canonical_string` (StringToSign from method,
bucket, key, sub-resources and headers) and `ks3.auth.encode` (base64 HMAC-SHA1); the CRC64
is the SDK's `ks3.utils.Crc64`.

    python Tests/emulators/ks3_emulator.py --port 0 --upstream http://127.0.0.1:8080 \\
        --upstream-access-key test:tester --upstream-secret-key testing \\
        [--access-key AKLTobjmounttest] [--secret-key objmount-ks3-test-secret] [--host 127.0.0.1]

`--port 0` picks a free port. Prints exactly one line `listening on http://HOST:PORT` on stdout
when ready; logs one line per request on stderr (the Signature is never logged).

What a client must do (see also ../shared/PROTOCOLS.md section 4):
  - Path-style addressing only: `/` (ListBuckets), `/bucket[/]`, `/bucket/key` (key percent-
    encoded in any way: the emulator decodes the path and signs the SDK's re-encoding of it).
  - Header auth `Authorization: KSS <AccessKey>:<base64 HMAC-SHA1>` with `Date` within 15 min
    (else 403 RequestTimeTooSkewed), or a presigned URL `?KSSAccessKeyId=&Expires=&Signature=`
    (expired: 403 AccessDenied "Request has expired"). Unknown access key: 403
    InvalidAccessKeyId; bad signature: 403 SignatureDoesNotMatch with <StringToSign> in the body;
    no auth at all: 403 AccessDenied (except GET/HEAD of an object, or a listing of a bucket,
    whose ACL in the side table below is public-read or public-read-write).
  - StringToSign = ks3.auth.canonical_string(method, bucket, key-as-decoded-from-the-path,
    query, headers): sub-resource values are taken DECODED from the URL (what the SDK signs
    for dict query args); the raw, still-encoded form (what it signs for string query args) is
    accepted too.
  - `x-kss-copy-source` is decoded with unquote_plus (the SDK sends quote_plus(key): `+` is a
    space, a literal `+` must be `%2B`), then re-encoded for the upstream.

Translation:
  - Request headers `x-kss-*` are forwarded as `x-amz-*` (meta, copy-source, metadata-directive,
    copy-source-range, server-side-encryption, tagging, ...), except the ones the emulator keeps
    (`x-kss-storage-class`, `x-kss-acl`) and KS3-only ones, which are dropped (callbacks,
    retention, fetch, `x-kss-date`, `x-kss-security-token`, `x-kss-forbid-overwrite`,
    `x-kss-object-type`/append). Client `x-amz-*` headers are dropped. Response headers
    `x-amz-*` become `x-kss-*` (`x-amz-request-id` -> `x-kss-request-id`, `x-amz-meta-*` ->
    `x-kss-meta-*`); Swift's own `X-Trans-Id`/`X-Openstack-Request-Id` are dropped.
  - Bodies stream through unchanged (Content-MD5 is passed on and checked by s3api) except:
    listings (`<StorageClass>` rewritten), Complete Multipart Upload (`<ChecksumCRC64ECMA>`
    added, as KS3 does and the SDK requires), PUT bucket (a CreateBucketConfiguration body is
    dropped: s3api only knows its own region).
  - Errors from the upstream pass through (status and XML body), headers renamed.

Kept in an in-memory side table (lost on restart), keyed by bucket/key:
  - Storage class. KS3's classes STANDARD, STANDARD_IA, DEEP_IA, ARCHIVE, COLD_ARCHIVE,
    DEEP_COLD_ARCHIVE are accepted in `x-kss-storage-class` on PUT object, Initiate Multipart
    Upload and PUT copy (others: 400 InvalidStorageClass) and never forwarded (s3api only knows
    STANDARD). Complete takes the class given at Initiate; a copy gets the class of its own
    header, STANDARD without one (S3 semantics); a copy of an object onto itself that only
    changes the class is answered locally. DELETE and multi-delete drop the entry. HEAD and GET
    of an object ALWAYS return `x-kss-storage-class` (STANDARD when unknown); listings (v1, v2,
    versions, uploads, parts) get the class from the table.
  - ACL. s3api (without s3_acl) cannot keep object ACLs and rejects authenticated-read, so ALL
    ACLs live here: `x-kss-acl` (private, public-read, public-read-write, authenticated-read) on
    PUT bucket, PUT object, Initiate and copy, and PUT `?acl` (canned header or an
    AccessControlPolicy body, stored verbatim) on buckets and objects; GET `?acl` answers an
    AccessControlPolicy built from the canned ACL (owner FULL_CONTROL, plus Group grants with
    URI http://acs.ksyun.com/groups/global/AllUsers or .../AuthenticatedUsers), default private.
    Owner ID/DisplayName = the upstream access key (what s3api shows as owner in listings).
  - CRC64-ECMA. PUT object and Upload Part answer `x-kss-checksum-crc64ecma` (decimal, CRC of
    the body received); Complete answers it (header and XML) as the combination of the parts'
    CRCs (or, when a part's CRC is unknown, e.g. Upload Part Copy of a range, computed from the
    assembled object); copies inherit the source's. HEAD/GET (full, 200) of an object return it
    when known.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import email.utils
import hashlib
import hmac
import http.client
import re
import secrets
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from serving import serve_until_signalled  # (this directory: the script's own)
from xml.sax.saxutils import escape as xml_escape

import ks3.auth as ks3auth          # the oracle: canonical_string + encode, as the SDK signs
from ks3.utils import Crc64         # CRC64-ECMA exactly as the SDK checks it

DEFAULT_ACCESS_KEY = "AKLTobjmounttest"
DEFAULT_SECRET_KEY = "objmount-ks3-test-secret"

MAX_SKEW = 15 * 60                   # KS3: RequestTimeTooSkewed beyond 15 minutes
UPSTREAM_TIMEOUT = 600
CHUNK = 1 << 20
MAX_SMALL_BODY = 64 << 20            # XML request bodies we read whole (complete, delete, acl)
MAX_DRAIN = 64 << 20                 # unread body we still drain after a local error answer

STORAGE_CLASSES = ("STANDARD", "STANDARD_IA", "DEEP_IA", "ARCHIVE", "COLD_ARCHIVE",
                   "DEEP_COLD_ARCHIVE")
CANNED_ACLS = ("private", "public-read", "public-read-write", "authenticated-read")
ALL_USERS = "http://acs.ksyun.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.ksyun.com/groups/global/AuthenticatedUsers"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
S3NS = "http://s3.amazonaws.com/doc/2006-03-01/"

PRESIGN_PARAMS = ("KSSAccessKeyId", "Expires", "Signature")
# x-kss-* headers the emulator handles itself (never forwarded).
LOCAL_HEADERS = {"x-kss-storage-class", "x-kss-acl"}
# KS3-only x-kss-* headers with no S3 counterpart (dropped; ks3go keeps them as x-kss-*).
KS3_ONLY_HEADERS = {
    "x-kss-callbackurl", "x-kss-callbackbody", "x-kss-callbackauth", "x-kss-retention-id",
    "x-kss-retention-overwrite", "x-kss-sourceurl", "x-kss-force", "x-kss-fetchsourceheader",
    "x-kss-date", "x-kss-security-token", "x-kss-forbid-overwrite", "x-kss-object-type",
    "x-kss-append-next-position", "x-kss-content-sha256", "x-kss-migration-source",
    "x-kss-data-redundancy-type", "x-kss-policy",
}
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
              "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding", "upgrade"}
# s3api's ALLOWED_SUB_RESOURCES (swift/common/middleware/s3api/s3request.py) for our SigV2.
S3_SUB_RESOURCES = {
    "acl", "delete", "lifecycle", "location", "logging", "notification", "partNumber", "policy",
    "requestPayment", "torrent", "uploads", "uploadId", "versionId", "versioning", "versions",
    "website", "response-cache-control", "response-content-disposition",
    "response-content-encoding", "response-content-language", "response-content-type",
    "response-expires", "cors", "tagging", "restore"}
DROPPED_RESPONSE_HEADERS = {"x-trans-id", "x-openstack-request-id", "date", "server",
                            "content-length"}


def log(msg: str) -> None:
    sys.stderr.write(f"ks3-emulator: {msg}\n")
    sys.stderr.flush()


def request_id() -> str:
    return secrets.token_hex(16)


def crc64(data: bytes, crc: Crc64 | None = None) -> Crc64:
    crc = crc or Crc64()
    crc.update(data)
    return crc


def xml_unescape(text: str) -> str:
    return (text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
            .replace("&apos;", "'").replace("&#39;", "'").replace("&amp;", "&"))


# --------------------------------------------------------------------------------------------
# Side table: storage classes, ACLs, CRCs, multipart uploads
# --------------------------------------------------------------------------------------------

class SideTable:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[tuple[str, str], dict] = {}     # (bucket, key) -> info
        self.buckets: dict[str, dict] = {}                  # bucket -> {"acl", "acl_xml"}
        self.uploads: dict[str, dict] = {}                  # upload id -> info

    def obj(self, bucket: str, key: str) -> dict:
        with self.lock:
            return dict(self.objects.get((bucket, key), {}))

    def set_obj(self, bucket: str, key: str, info: dict) -> None:
        with self.lock:
            self.objects[(bucket, key)] = info

    def update_obj(self, bucket: str, key: str, **changes) -> None:
        with self.lock:
            self.objects.setdefault((bucket, key), {}).update(changes)

    def drop_obj(self, bucket: str, key: str) -> None:
        with self.lock:
            self.objects.pop((bucket, key), None)

    def drop_bucket(self, bucket: str) -> None:
        with self.lock:
            self.buckets.pop(bucket, None)
            for k in [k for k in self.objects if k[0] == bucket]:
                del self.objects[k]
            for u in [u for u, v in self.uploads.items() if v["bucket"] == bucket]:
                del self.uploads[u]

    def bucket(self, bucket: str) -> dict:
        with self.lock:
            return dict(self.buckets.get(bucket, {}))

    def set_bucket(self, bucket: str, **info) -> None:
        with self.lock:
            self.buckets.setdefault(bucket, {}).update(info)

    def upload(self, upload_id: str) -> dict | None:
        with self.lock:
            u = self.uploads.get(upload_id)
            return None if u is None else {**u, "parts": dict(u["parts"])}

    def new_upload(self, upload_id: str, bucket: str, key: str, storage_class: str,
                   acl: str) -> None:
        with self.lock:
            self.uploads[upload_id] = {"bucket": bucket, "key": key, "storage_class":
                                       storage_class, "acl": acl, "parts": {}}

    def set_part(self, upload_id: str, bucket: str, key: str, number: int,
                 crc: int | None, size: int) -> None:
        with self.lock:
            u = self.uploads.setdefault(upload_id, {
                "bucket": bucket, "key": key, "storage_class": "STANDARD", "acl": "private",
                "parts": {}})
            u["parts"][number] = (crc, size)

    def drop_upload(self, upload_id: str) -> None:
        with self.lock:
            self.uploads.pop(upload_id, None)


# --------------------------------------------------------------------------------------------
# Upstream (S3 API, SigV2)
# --------------------------------------------------------------------------------------------

class Upstream:
    def __init__(self, url: str, access_key: str, secret_key: str):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"bad --upstream URL {url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.hostport = parts.netloc
        self.access_key = access_key
        self.secret_key = secret_key

    def connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=UPSTREAM_TIMEOUT)

    def sign(self, method: str, raw_path: str, raw_query: str, headers: dict[str, str]) -> None:
        """AWS SigV2 as s3api checks it: RAW path, decoded sub-resource values."""
        headers["Date"] = email.utils.formatdate(usegmt=True)
        lower = {k.lower(): v for k, v in headers.items()}
        lines = [method.encode(), lower.get("content-md5", "").strip().encode(),
                 lower.get("content-type", "").strip().encode(), headers["Date"].encode()]
        for k in sorted(k for k in lower if k.startswith("x-amz-")):
            lines.append(f"{k}:{lower[k].strip()}".encode("utf-8"))
        resource = raw_path.encode("latin-1", "replace")
        if raw_query:
            params: dict[bytes, bytes] = {}
            for piece in raw_query.split("&"):
                if not piece:
                    continue
                k, eq, v = piece.partition("=")
                kb = urllib.parse.unquote_to_bytes(k.replace("+", " "))
                params[kb] = urllib.parse.unquote_to_bytes(v.replace("+", " "))
            sub = [k + b"=" + v if v else k for k, v in sorted(params.items())
                   if k.decode("latin-1") in S3_SUB_RESOURCES]
            if sub:
                resource += b"?" + b"&".join(sub)
        lines.append(resource)
        sig = base64.b64encode(hmac.new(self.secret_key.encode(), b"\n".join(lines),
                                        hashlib.sha1).digest()).decode()
        headers["Authorization"] = f"AWS {self.access_key}:{sig}"


class UpstreamError(Exception):
    pass


# --------------------------------------------------------------------------------------------
# The request handler
# --------------------------------------------------------------------------------------------

class KS3Error(Exception):
    def __init__(self, status: int, code: str, message: str, extra: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra or {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ks3-emulator"
    sys_version = ""

    access_key: str
    secret_key: str
    upstream: Upstream
    table: SideTable

    # plumbing -----------------------------------------------------------------------------
    def version_string(self) -> str:
        return self.server_version

    def log_request(self, code="-", size="-") -> None:
        extra = getattr(self, "_note_text", "")
        log(f'{self.client_address[0]} "{self.command or "-"} {self._safe_path()}" {code}{extra}')

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        log(format % args)

    def _safe_path(self) -> str:
        path = getattr(self, "path", "") or ""
        return re.sub(r"([?&]Signature=)[^&]*", r"\1<redacted>", path)

    def _note(self, text: str) -> None:
        self._note_text = getattr(self, "_note_text", "") + " " + text

    def do_GET(self) -> None:  # noqa: N802
        self._handle()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = do_GET

    # body ------------------------------------------------------------------------------------
    def _body_length(self) -> int | None:
        """Content-Length of the request body; None when chunked."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return None
        try:
            return max(0, int(self.headers.get("Content-Length") or 0))
        except ValueError:
            raise KS3Error(400, "InvalidArgument", "Invalid Content-Length") from None

    def _read_chunked(self, limit: int | None) -> bytes:
        out = bytearray()
        while True:
            line = self.rfile.readline(65537)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                break
            out += self.rfile.read(size)
            self.rfile.readline(8)
            if limit is not None and len(out) > limit:
                raise KS3Error(400, "EntityTooLarge", "Your proposed upload is too large")
        return bytes(out)

    def _read_body(self, limit: int | None = MAX_SMALL_BODY) -> bytes:
        length = self._body_length()
        self._body_consumed = True
        if length is None:
            return self._read_chunked(limit)
        if limit is not None and length > limit:
            self._body_consumed = False
            raise KS3Error(400, "EntityTooLarge", "Your proposed upload is too large")
        return self.rfile.read(length) if length else b""

    def _drain(self) -> None:
        """After an answer made without reading the body: read it or close the connection."""
        if getattr(self, "_body_consumed", False):
            return
        self._body_consumed = True
        try:
            length = self._body_length()
        except KS3Error:
            self.close_connection = True
            return
        if length is None or length > MAX_DRAIN:
            self.close_connection = True
            return
        while length > 0:
            got = self.rfile.read(min(CHUNK, length))
            if not got:
                self.close_connection = True
                return
            length -= len(got)

    # answers ---------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
              content_type: str | None = None) -> None:
        self._drain()
        self.send_response(status)
        have = {k.lower() for k, _ in headers or []}
        if "x-kss-request-id" not in have:
            self.send_header("x-kss-request-id", request_id())
        for k, v in headers or []:
            self.send_header(k, v)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _error(self, e: KS3Error) -> None:
        rid = request_id()
        self._note(f"error={e.code}")
        resource = getattr(self, "raw_path", None) or self.path.partition("?")[0] or "/"
        parts = [f"<Code>{xml_escape(e.code)}</Code>",
                 f"<Message>{xml_escape(e.message)}</Message>"]
        for k, v in e.extra.items():
            parts.append(f"<{k}>{xml_escape(str(v))}</{k}>")
        parts.append(f"<Resource>{xml_escape(resource)}</Resource>")
        parts.append(f"<RequestId>{rid}</RequestId>")
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(parts)
                + "</Error>").encode("utf-8")
        self._send(e.status, body, [("x-kss-request-id", rid)], "application/xml")

    # request parsing -----------------------------------------------------------------------
    def _parse(self) -> None:
        raw = self.path
        if raw.startswith(("http://", "https://")):
            parts = urllib.parse.urlsplit(raw)
            raw = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        raw_path, _, raw_query = raw.partition("?")
        if not raw_path.startswith("/"):
            raise KS3Error(400, "InvalidURI", "Couldn't parse the specified URI.")
        self.raw_path, self.raw_query = raw_path, raw_query
        self.pairs = urllib.parse.parse_qsl(raw_query, keep_blank_values=True)
        self.q = dict(self.pairs)
        if any(ord(c) > 126 or ord(c) < 33 for c in raw_path):
            # Raw (unencoded) bytes in the request line: http.server hands them over as
            # latin-1. Percent-encode them for the upstream; decode the key as UTF-8.
            raw_path = urllib.parse.quote(raw_path.encode("latin-1", "replace"),
                                          safe="/%!$&'()*+,;=:@~-._")
            self.raw_path = raw_path
        bucket_raw, _, key_raw = raw_path[1:].partition("/")
        self.bucket = urllib.parse.unquote(bucket_raw)
        self.key = urllib.parse.unquote_to_bytes(key_raw).decode("utf-8", "replace")
        if self.bucket and not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", self.bucket):
            raise KS3Error(400, "InvalidBucketName", "The specified bucket is not valid.",
                           {"BucketName": self.bucket})
        # The query the upstream sees: ours without the presign parameters (raw encoding kept).
        kept = [p for p in raw_query.split("&") if p and urllib.parse.unquote_plus(
            p.partition("=")[0]) not in PRESIGN_PARAMS]
        self.upstream_query = "&".join(kept)

    # authentication ------------------------------------------------------------------------
    def _string_to_sign_candidates(self, expires: str | None) -> list[str]:
        headers = {k: v for k, v in self.headers.items()}
        decoded = {k: v for k, v in self.pairs if k not in PRESIGN_PARAMS}
        out = [ks3auth.canonical_string(self.command, self.bucket, self.key, decoded or None,
                                        headers, expires=expires)]
        raw = "&".join(p for p in self.raw_query.split("&") if p and p.partition("=")[0]
                       not in PRESIGN_PARAMS)
        alt = ks3auth.canonical_string(self.command, self.bucket, self.key, raw or None,
                                       headers, expires=expires)
        if alt not in out:
            out.append(alt)
        return out

    def _authenticate(self) -> bool:
        """True when signed by our key; False for anonymous; raises KS3Error otherwise."""
        auth = self.headers.get("Authorization")
        if auth is not None:
            m = re.fullmatch(r"KSS ([^:\s]+):(\S+)", auth.strip())
            if not m:
                # (KS3 also takes V4 signatures; this emulator checks KSS V2 only.)
                raise KS3Error(400, "InvalidArgument",
                               "Unsupported Authorization header: this emulator takes KSS V2 "
                               "only, 'KSS AccessKey:Signature'",
                               {"ArgumentName": "Authorization"})
            ak, signature, expires = m.group(1), m.group(2), None
        elif "KSSAccessKeyId" in self.q or "Signature" in self.q:
            ak, signature = self.q.get("KSSAccessKeyId", ""), self.q.get("Signature", "")
            expires = self.q.get("Expires")
            if not ak or not signature or not expires:
                raise KS3Error(403, "AccessDenied",
                               "Query-string authentication requires the Signature, Expires "
                               "and KSSAccessKeyId parameters")
        else:
            return False
        if ak != self.access_key:
            raise KS3Error(403, "InvalidAccessKeyId",
                           "The KS3 Access Key Id you provided does not exist in our records.",
                           {"KSSAccessKeyId": ak})
        now = time.time()
        if expires is None:
            date = self.headers.get("Date") or self.headers.get("x-kss-date")
            try:
                when = email.utils.parsedate_to_datetime(date).timestamp() if date else None
            except (TypeError, ValueError, IndexError):
                when = None
            if when is None:
                raise KS3Error(403, "AccessDenied",
                               "KS3 authentication requires a valid Date or x-kss-date header")
            if abs(now - when) > MAX_SKEW:
                raise KS3Error(403, "RequestTimeTooSkewed",
                               "The difference between the request time and the current time "
                               "is too large.",
                               {"RequestTime": date, "ServerTime": email.utils.formatdate(
                                   now, usegmt=True), "MaxAllowedSkewMilliseconds": "900000"})
        candidates = self._string_to_sign_candidates(expires)
        if not any(hmac.compare_digest(ks3auth.encode(self.secret_key, sts).encode(),
                                       signature.encode()) for sts in candidates):
            raise KS3Error(403, "SignatureDoesNotMatch",
                           "The request signature we calculated does not match the signature "
                           "you provided. Check your key and signing method.",
                           {"StringToSign": candidates[0]})
        if expires is not None:
            try:
                expired = int(expires) < now
            except ValueError:
                expired = True
            if expired:
                raise KS3Error(403, "AccessDenied", "Request has expired",
                               {"Expires": expires, "ServerTime": email.utils.formatdate(
                                   now, usegmt=True)})
        return True

    def _anonymous_allowed(self) -> bool:
        public = ("public-read", "public-read-write")
        if self.command in ("GET", "HEAD") and self.bucket and self.key and not (
                set(self.q) & {"acl", "uploadId"}):
            return self.table.obj(self.bucket, self.key).get("acl") in public
        if self.command == "GET" and self.bucket and not self.key and not (
                set(self.q) & {"acl", "uploads"}):
            return self.table.bucket(self.bucket).get("acl") in public
        return False

    # dispatch ------------------------------------------------------------------------------
    def _handle(self) -> None:
        self._note_text = ""
        self._body_consumed = False
        self.raw_path = ""          # the handler object lives as long as the connection
        try:
            self._parse()
            if not self._authenticate() and not self._anonymous_allowed():
                raise KS3Error(403, "AccessDenied", "Access Denied")
            self._route()
        except KS3Error as e:
            self._error(e)
        except UpstreamError as e:
            log(f"upstream failure on {self.command} {self._safe_path()}: {e}")
            self.close_connection = True
            self._error(KS3Error(503, "ServiceUnavailable", "Please reduce your request rate."))
        except (ConnectionError, BrokenPipeError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - keep serving
            log(f"internal error on {self.command} {self._safe_path()}: {type(e).__name__}: {e}")
            self.close_connection = True
            try:
                self._error(KS3Error(500, "InternalError", "We encountered an internal error. "
                                     "Please try again."))
            except OSError:
                pass

    def _route(self) -> None:
        m, q, b, k = self.command, self.q, self.bucket, self.key
        if not b:
            return self._forward()
        if "acl" in q:
            return self._acl()
        if k:
            if m == "PUT" and "uploadId" in q and "partNumber" in q:
                return self._upload_part()
            if m == "PUT" and self.headers.get("x-kss-copy-source"):
                return self._copy()
            if m == "PUT":
                return self._put_object()
            if m == "POST" and "uploads" in q:
                return self._initiate()
            if m == "POST" and "uploadId" in q:
                return self._complete()
            if m == "DELETE" and "uploadId" in q:
                return self._abort()
            if m == "DELETE":
                return self._delete_object()
            if m == "GET" and "uploadId" in q:
                return self._list_parts()
            if m in ("GET", "HEAD") and not set(q) & {"tagging", "restore"}:
                return self._get_object()
            return self._forward()
        if m == "POST" and "delete" in q:
            return self._multi_delete()
        if m == "GET" and "uploads" in q:
            return self._list_uploads()
        if m == "GET" and (not set(q) & ks3auth_sub_resources() or "versions" in q):
            return self._list_objects()
        if m == "PUT" and not set(q) & ks3auth_sub_resources():
            return self._create_bucket()
        if m == "DELETE" and not set(q) & ks3auth_sub_resources():
            return self._delete_bucket()
        return self._forward()

    # validation ------------------------------------------------------------------------------
    def _storage_class(self) -> str | None:
        sc = self.headers.get("x-kss-storage-class")
        if sc is None:
            return None
        if sc not in STORAGE_CLASSES:
            raise KS3Error(400, "InvalidStorageClass",
                           "The storage class you specified is not valid.",
                           {"StorageClassRequested": sc})
        return sc

    def _canned_acl(self) -> str | None:
        acl = self.headers.get("x-kss-acl")
        if acl is None:
            return None
        if acl not in CANNED_ACLS:
            raise KS3Error(400, "InvalidArgument", "The ACL you specified is not valid.",
                           {"ArgumentName": "x-kss-acl", "ArgumentValue": acl})
        return acl

    # upstream plumbing -----------------------------------------------------------------------
    def _upstream_headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.headers.items():
            ln = name.lower()
            if ln in HOP_BY_HOP or ln in ("host", "authorization", "date", "expect",
                                          "content-length") or ln.startswith("x-amz-"):
                continue
            if ln.startswith("x-kss-"):
                if ln in LOCAL_HEADERS or ln in KS3_ONLY_HEADERS:
                    continue
                if ln == "x-kss-copy-source":
                    value = self._copy_source()[2]
                ln = "x-amz-" + ln[6:]
            out[ln] = value
        return out

    def _copy_source(self) -> tuple[str, str, str]:
        """(bucket, key, value for x-amz-copy-source) from x-kss-copy-source."""
        value = self.headers.get("x-kss-copy-source", "")
        src, _, qs = value.partition("?")
        src = urllib.parse.unquote_plus(src)
        if src.startswith("/"):
            src = src[1:]
        bucket, _, key = src.partition("/")
        if not bucket or not key:
            raise KS3Error(400, "InvalidArgument", "Copy Source must mention the source bucket "
                           "and key: /sourcebucket/sourcekey",
                           {"ArgumentName": "x-kss-copy-source", "ArgumentValue": value})
        out = "/" + urllib.parse.quote(bucket) + "/" + urllib.parse.quote(key, safe="/")
        if qs:
            out += "?" + qs
        return bucket, key, out

    def _request_upstream(self, method: str | None = None, *, raw_path: str | None = None,
                          raw_query: str | None = None, headers: dict[str, str] | None = None,
                          body: bytes | None = None, stream: bool = False,
                          crc: bool = False) -> tuple[http.client.HTTPConnection,
                                                      http.client.HTTPResponse,
                                                      int | None, int]:
        """Send a request upstream. Body: `body` bytes, or (stream=True) the client's body,
        streamed. Returns (connection, response, crc of the body or None, body size)."""
        method = method or self.command
        raw_path = self.raw_path if raw_path is None else raw_path
        raw_query = self.upstream_query if raw_query is None else raw_query
        headers = dict(self._upstream_headers() if headers is None else headers)
        length: int | None
        if stream:
            length = self._body_length()
            if length is None:               # chunked from the client: buffer it
                body = self._read_body(limit=None)
                length = len(body)
                stream = False
        else:
            body = body or b""
            length = len(body)
        if length or method in ("PUT", "POST"):
            headers["Content-Length"] = str(length)
        self.upstream.sign(method, raw_path, raw_query, headers)
        url = raw_path + ("?" + raw_query if raw_query else "")
        conn = self.upstream.connect()
        checksum = Crc64() if crc else None
        try:
            conn.putrequest(method, url, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", self.upstream.hostport)
            for k, v in headers.items():
                conn.putheader(k, v.encode("latin-1", "replace") if isinstance(v, str) else v)
            conn.endheaders()
        except OSError as e:
            conn.close()
            raise UpstreamError(f"connect/send: {e}") from e
        sent = 0
        send_error: Exception | None = None
        if stream:
            self._body_consumed = True
            remaining = length or 0
            while remaining > 0:
                chunk = self.rfile.read(min(CHUNK, remaining))
                if not chunk:
                    self.close_connection = True
                    conn.close()
                    raise ConnectionError("client closed the connection mid-body")
                remaining -= len(chunk)
                sent += len(chunk)
                if checksum:
                    checksum.update(chunk)
                if send_error is None:
                    try:
                        conn.send(chunk)
                    except OSError as e:     # the upstream answered early; keep reading ours
                        send_error = e
        elif body:
            sent = len(body)
            if checksum:
                checksum.update(body)
            try:
                conn.send(body)
            except OSError as e:
                send_error = e
        try:
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise UpstreamError(f"response: {e} (send error: {send_error})") from e
        return conn, resp, (checksum.crc if checksum else None), sent

    def _response_headers(self, resp: http.client.HTTPResponse) -> list[tuple[str, str]]:
        out = []
        for name, value in resp.getheaders():
            ln = name.lower()
            if ln in HOP_BY_HOP or ln in DROPPED_RESPONSE_HEADERS:
                continue
            if ln == "x-amz-request-id":
                name = "x-kss-request-id"
            elif ln.startswith("x-amz-"):
                name = "x-kss-" + name[6:]
            out.append((name, value))
        return out

    def _relay(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
               extra: list[tuple[str, str]] | None = None, transform=None) -> None:
        """Answer the client with the upstream response (headers renamed). `transform(bytes)
        -> bytes` rewrites a (buffered) 2xx body."""
        try:
            headers = self._response_headers(resp)
            if extra:
                names = {k.lower() for k, _ in extra}
                headers = [(k, v) for k, v in headers if k.lower() not in names] + extra
            length = resp.getheader("Content-Length")
            no_body = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
            self._drain()
            if no_body:
                self.send_response(resp.status)
                for k, v in headers:
                    self.send_header(k, v)
                if length is not None:
                    self.send_header("Content-Length", length)
                elif resp.status not in (204, 304):
                    self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if transform is not None or length is None:
                body = resp.read()
                if transform is not None and 200 <= resp.status < 300:
                    body = transform(body)
                self.send_response(resp.status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(resp.status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", length)
            self.end_headers()
            remaining = int(length)
            while remaining > 0:
                chunk = resp.read(min(CHUNK, remaining))
                if not chunk:
                    self.close_connection = True   # upstream cut short: so must we
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)
        finally:
            conn.close()

    def _forward(self, extra: list[tuple[str, str]] | None = None, transform=None) -> None:
        conn, resp, _, _ = self._request_upstream(stream=True)
        self._relay(conn, resp, extra, transform)

    def _upstream_simple(self, method: str, raw_path: str, raw_query: str = "",
                         headers: dict[str, str] | None = None,
                         body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        """A whole upstream exchange of the emulator's own: (status, lower headers, body)."""
        conn, resp, _, _ = self._request_upstream(method, raw_path=raw_path, raw_query=raw_query,
                                                  headers=headers or {}, body=body)
        try:
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def _object_path(self, bucket: str, key: str) -> str:
        return "/" + urllib.parse.quote(bucket) + "/" + urllib.parse.quote(key, safe="/")

    # objects -----------------------------------------------------------------------------------
    def _put_object(self) -> None:
        sc, acl = self._storage_class(), self._canned_acl()
        conn, resp, crc, size = self._request_upstream(stream=True, crc=True)
        extra = []
        if 200 <= resp.status < 300:
            self.table.set_obj(self.bucket, self.key, {"storage_class": sc or "STANDARD",
                                                       "acl": acl or "private", "crc": crc})
            extra.append(("x-kss-checksum-crc64ecma", str(crc)))
            self._note(f"crc={crc} size={size} class={sc or 'STANDARD'}")
        self._relay(conn, resp, extra)

    def _get_object(self) -> None:
        info = self.table.obj(self.bucket, self.key)
        conn, resp, _, _ = self._request_upstream(stream=True)
        extra = []
        if 200 <= resp.status < 300:
            extra.append(("x-kss-storage-class", info.get("storage_class", "STANDARD")))
            if resp.status == 200 and info.get("crc") is not None:
                extra.append(("x-kss-checksum-crc64ecma", str(info["crc"])))
        self._relay(conn, resp, extra)

    def _delete_object(self) -> None:
        conn, resp, _, _ = self._request_upstream(stream=True)
        if 200 <= resp.status < 300:
            self.table.drop_obj(self.bucket, self.key)
        self._relay(conn, resp)

    def _copy(self) -> None:
        sc, acl = self._storage_class(), self._canned_acl()
        src_bucket, src_key, _ = self._copy_source()
        directive = self.headers.get("x-kss-metadata-directive", "COPY").upper()
        same = (src_bucket, src_key) == (self.bucket, self.key)
        if same and directive != "REPLACE" and sc is not None and "?" not in \
                self.headers.get("x-kss-copy-source", ""):
            return self._change_storage_class_in_place(sc, acl)
        src_info = self.table.obj(src_bucket, src_key)
        conn, resp, _, _ = self._request_upstream(stream=True)
        extra = []
        crc = src_info.get("crc")
        if resp.status == 200:
            # s3api may send 200 and then an <Error> body: decide on the body.
            body = resp.read()
            conn.close()
            ok = b"<Error>" not in body
            if ok:
                self.table.set_obj(self.bucket, self.key, {
                    "storage_class": sc or "STANDARD", "acl": acl or "private", "crc": crc})
                if crc is not None:
                    extra.append(("x-kss-checksum-crc64ecma", str(crc)))
            headers = [(k, v) for k, v in self._response_headers(resp)
                       if k.lower() != "content-type"]
            self._send(200, body, headers + extra, resp.getheader("Content-Type")
                       or "application/xml")
            return
        self._relay(conn, resp)

    def _change_storage_class_in_place(self, sc: str, acl: str | None) -> None:
        status, headers, _ = self._upstream_simple("HEAD", self.raw_path)
        if status != 200:
            raise KS3Error(404, "NoSuchKey", "The specified key does not exist.",
                           {"Key": self.key}) if status == 404 else \
                KS3Error(status, "InternalError", f"upstream HEAD answered {status}")
        changes = {"storage_class": sc}
        if acl is not None:
            changes["acl"] = acl
            changes.pop("acl_xml", None)
        self.table.update_obj(self.bucket, self.key, **changes)
        try:
            lm = email.utils.parsedate_to_datetime(headers.get("last-modified", ""))
        except (TypeError, ValueError, IndexError):
            lm = datetime.datetime.now(datetime.timezone.utc)
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<CopyObjectResult>'
                f'<LastModified>{lm.strftime("%Y-%m-%dT%H:%M:%S.000Z")}</LastModified>'
                f'<ETag>{xml_escape(headers.get("etag", ""))}</ETag></CopyObjectResult>')
        self._note(f"class={sc} (in place)")
        self._send(200, body.encode(), None, "application/xml")

    # multipart -------------------------------------------------------------------------------
    def _initiate(self) -> None:
        sc, acl = self._storage_class(), self._canned_acl()
        conn, resp, _, _ = self._request_upstream(stream=True)

        def remember(body: bytes) -> bytes:
            m = re.search(rb"<UploadId>([^<]+)</UploadId>", body)
            if m:
                self.table.new_upload(xml_unescape(m.group(1).decode()), self.bucket, self.key,
                                      sc or "STANDARD", acl or "private")
            return body

        self._relay(conn, resp, transform=remember)

    def _upload_part(self) -> None:
        upload_id = self.q["uploadId"]
        try:
            number = int(self.q["partNumber"])
        except ValueError:
            raise KS3Error(400, "InvalidArgument", "Part number must be an integer between 1 "
                           "and 10000, inclusive") from None
        if self.headers.get("x-kss-copy-source"):          # Upload Part Copy
            src_bucket, src_key, _ = self._copy_source()
            whole = not self.headers.get("x-kss-copy-source-range")
            src_crc = self.table.obj(src_bucket, src_key).get("crc") if whole else None
            conn, resp, _, _ = self._request_upstream(stream=True)
            if resp.status == 200:
                body = resp.read()
                conn.close()
                if b"<Error>" not in body:
                    size = None
                    if src_crc is not None:
                        st, h, _ = self._upstream_simple("HEAD", self._object_path(src_bucket,
                                                                                   src_key))
                        size = int(h.get("content-length", "0")) if st == 200 else None
                    self.table.set_part(upload_id, self.bucket, self.key, number,
                                        src_crc if size is not None else None, size or 0)
                headers = [(k, v) for k, v in self._response_headers(resp)
                           if k.lower() != "content-type"]
                self._send(200, body, headers, resp.getheader("Content-Type") or "application/xml")
                return
            return self._relay(conn, resp)
        conn, resp, crc, size = self._request_upstream(stream=True, crc=True)
        extra = []
        if 200 <= resp.status < 300:
            self.table.set_part(upload_id, self.bucket, self.key, number, crc, size)
            extra.append(("x-kss-checksum-crc64ecma", str(crc)))
            self._note(f"part={number} crc={crc} size={size}")
        self._relay(conn, resp, extra)

    def _complete(self) -> None:
        upload_id = self.q["uploadId"]
        body = self._read_body()
        numbers = [int(n) for n in re.findall(rb"<PartNumber>\s*(\d+)\s*</PartNumber>", body)]
        upload = self.table.upload(upload_id) or {"storage_class": "STANDARD", "acl": "private",
                                                  "parts": {}}
        conn, resp, _, _ = self._request_upstream(body=body)
        if resp.status != 200:
            return self._relay(conn, resp)
        data = resp.read()
        conn.close()
        headers = [(k, v) for k, v in self._response_headers(resp) if k.lower() != "content-type"]
        ctype = resp.getheader("Content-Type") or "application/xml"
        if b"<Error>" in data:
            return self._send(200, data, headers, ctype)
        crc = self._combined_crc(upload["parts"], numbers)
        self.table.set_obj(self.bucket, self.key, {"storage_class": upload["storage_class"],
                                                   "acl": upload["acl"], "crc": crc})
        self.table.drop_upload(upload_id)
        if crc is not None:
            element = f"<ChecksumCRC64ECMA>{crc}</ChecksumCRC64ECMA>".encode()
            data, n = re.subn(rb"(</CompleteMultipartUploadResult>)", element + rb"\1", data,
                              count=1)
            headers.append(("x-kss-checksum-crc64ecma", str(crc)))
        self._note(f"parts={len(numbers)} crc={crc}")
        self._send(200, data, headers, ctype)

    def _combined_crc(self, parts: dict[int, tuple[int | None, int]],
                      numbers: list[int]) -> int | None:
        if numbers and all(n in parts and parts[n][0] is not None for n in numbers):
            combiner = Crc64(0)
            crc = 0
            for n in numbers:
                part_crc, size = parts[n]
                crc = combiner.combine(crc, part_crc, size)
            return crc
        # Some part's CRC is unknown: compute it from the assembled object.
        conn, resp, _, _ = self._request_upstream("GET", raw_path=self.raw_path, raw_query="",
                                                  headers={})
        try:
            if resp.status != 200:
                return None
            checksum = Crc64()
            while True:
                chunk = resp.read(CHUNK)
                if not chunk:
                    break
                checksum.update(chunk)
            return checksum.crc
        finally:
            conn.close()

    def _abort(self) -> None:
        conn, resp, _, _ = self._request_upstream(stream=True)
        if 200 <= resp.status < 300:
            self.table.drop_upload(self.q["uploadId"])
        self._relay(conn, resp)

    def _list_parts(self) -> None:
        upload = self.table.upload(self.q["uploadId"]) or {}
        sc = upload.get("storage_class", "STANDARD")
        conn, resp, _, _ = self._request_upstream(stream=True)
        self._relay(conn, resp, transform=lambda body: re.sub(
            rb"<StorageClass>[^<]*</StorageClass>", f"<StorageClass>{sc}</StorageClass>".encode(),
            body))

    def _list_uploads(self) -> None:
        conn, resp, _, _ = self._request_upstream(stream=True)

        def rewrite(body: bytes) -> bytes:
            def one(m: re.Match) -> bytes:
                block = m.group(0)
                uid = re.search(rb"<UploadId>([^<]*)</UploadId>", block)
                upload = self.table.upload(xml_unescape(uid.group(1).decode())) if uid else None
                sc = (upload or {}).get("storage_class", "STANDARD")
                return re.sub(rb"<StorageClass>[^<]*</StorageClass>",
                              f"<StorageClass>{sc}</StorageClass>".encode(), block)
            return re.sub(rb"<Upload>.*?</Upload>", one, body, flags=re.S)

        self._relay(conn, resp, transform=rewrite)

    # buckets ---------------------------------------------------------------------------------
    def _list_objects(self) -> None:
        conn, resp, _, _ = self._request_upstream(stream=True)

        def rewrite(body: bytes) -> bytes:
            url = b"<EncodingType>url</EncodingType>" in body

            def one(m: re.Match) -> bytes:
                block = m.group(0)
                km = re.search(rb"<Key>([^<]*)</Key>", block)
                if not km:
                    return block
                key = xml_unescape(km.group(1).decode("utf-8", "replace"))
                if url:
                    key = urllib.parse.unquote(key)
                sc = self.table.obj(self.bucket, key).get("storage_class", "STANDARD")
                return re.sub(rb"<StorageClass>[^<]*</StorageClass>",
                              f"<StorageClass>{sc}</StorageClass>".encode(), block)
            return re.sub(rb"<(Contents|Version)>.*?</\1>", one, body, flags=re.S)

        self._relay(conn, resp, transform=rewrite)

    def _create_bucket(self) -> None:
        acl = self._canned_acl()
        self._read_body()   # a CreateBucketConfiguration (KS3 region) means nothing to s3api
        headers = {k: v for k, v in self._upstream_headers().items()
                   if k not in ("content-md5", "content-type")}
        conn, resp, _, _ = self._request_upstream(headers=headers, body=b"")
        if 200 <= resp.status < 300:
            self.table.set_bucket(self.bucket, acl=acl or "private", acl_xml=None)
        self._relay(conn, resp)

    def _delete_bucket(self) -> None:
        conn, resp, _, _ = self._request_upstream(stream=True)
        if 200 <= resp.status < 300:
            self.table.drop_bucket(self.bucket)
        self._relay(conn, resp)

    def _multi_delete(self) -> None:
        body = self._read_body()
        url = self.q.get("encoding-type") == "url"
        try:
            root = ET.fromstring(body)
            keys = [el.text or "" for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Key"]
        except ET.ParseError:
            keys = []
        conn, resp, _, _ = self._request_upstream(body=body)

        def forget(data: bytes) -> bytes:
            failed = set()
            for m in re.finditer(rb"<Error>.*?</Error>", data, flags=re.S):
                km = re.search(rb"<Key>([^<]*)</Key>", m.group(0))
                if km:
                    k = xml_unescape(km.group(1).decode("utf-8", "replace"))
                    failed.add(urllib.parse.unquote(k) if url else k)
            for k in keys:
                if k not in failed:
                    self.table.drop_obj(self.bucket, k)
            return data

        self._relay(conn, resp, transform=forget)

    # ACLs (all in the side table) ---------------------------------------------------------------
    def _acl(self) -> None:
        if self.command not in ("GET", "PUT", "HEAD"):
            return self._forward()
        if self.key:
            status, _, _ = self._upstream_simple("HEAD", self.raw_path)
            if status == 404:
                # Which one is missing, the bucket or the key?
                bst, _, _ = self._upstream_simple("HEAD", "/" + urllib.parse.quote(self.bucket))
                if bst == 404:
                    raise KS3Error(404, "NoSuchBucket", "The specified bucket does not exist.",
                                   {"BucketName": self.bucket})
                raise KS3Error(404, "NoSuchKey", "The specified key does not exist.",
                               {"Key": self.key})
        else:
            status, _, _ = self._upstream_simple("HEAD", "/" + urllib.parse.quote(self.bucket))
            if status == 404:
                raise KS3Error(404, "NoSuchBucket", "The specified bucket does not exist.",
                               {"BucketName": self.bucket})
        if status == 403:
            raise KS3Error(403, "AccessDenied", "Access Denied")
        if not 200 <= status < 300:
            raise KS3Error(500, "InternalError", f"upstream HEAD answered {status}")
        info = self.table.obj(self.bucket, self.key) if self.key else self.table.bucket(self.bucket)
        if self.command == "PUT":
            acl = self._canned_acl()
            body = self._read_body()
            if acl is None and body.strip():
                acl, xml_body = self._acl_from_xml(body), body
            elif acl is None:
                raise KS3Error(400, "MissingSecurityHeader",
                               "Your request was missing a required header.",
                               {"MissingHeaderName": "x-kss-acl"})
            else:
                xml_body = None
            if self.key:
                self.table.update_obj(self.bucket, self.key, acl=acl, acl_xml=xml_body)
            else:
                self.table.set_bucket(self.bucket, acl=acl, acl_xml=xml_body)
            self._note(f"acl={acl}")
            return self._send(200)
        if info.get("acl_xml"):
            body = info["acl_xml"]
        else:
            body = self._acl_xml(info.get("acl") or "private").encode()
        self._send(200, body, None, "application/xml")

    def _acl_from_xml(self, body: bytes) -> str:
        """The canned ACL an AccessControlPolicy amounts to (for anonymous access)."""
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            raise KS3Error(400, "MalformedACLError", "The XML you provided was not well-formed "
                           "or did not validate against our published schema.") from None
        if root.tag.rsplit("}", 1)[-1] != "AccessControlPolicy":
            raise KS3Error(400, "MalformedACLError", "The XML you provided was not well-formed "
                           "or did not validate against our published schema.")
        perms: dict[str, set[str]] = {}
        for grant in root.iter():
            if grant.tag.rsplit("}", 1)[-1] != "Grant":
                continue
            uri = perm = None
            for el in grant.iter():
                tag = el.tag.rsplit("}", 1)[-1]
                if tag == "URI":
                    uri = (el.text or "").strip()
                elif tag == "Permission":
                    perm = (el.text or "").strip()
            if uri and perm:
                perms.setdefault(uri.rsplit("/", 1)[-1], set()).add(perm)
        everyone = perms.get("AllUsers", set())
        if "FULL_CONTROL" in everyone or {"READ", "WRITE"} <= everyone:
            return "public-read-write"
        if "READ" in everyone:
            return "public-read"
        if perms.get("AuthenticatedUsers"):
            return "authenticated-read"
        return "private"

    def _acl_xml(self, acl: str) -> str:
        owner = xml_escape(self.upstream.access_key)

        def group(uri: str, perm: str) -> str:
            return (f'<Grant><Grantee xmlns:xsi="{XSI}" xsi:type="Group"><URI>{uri}</URI>'
                    f'</Grantee><Permission>{perm}</Permission></Grant>')

        grants = [f'<Grant><Grantee xmlns:xsi="{XSI}" xsi:type="CanonicalUser"><ID>{owner}</ID>'
                  f'<DisplayName>{owner}</DisplayName></Grantee>'
                  f'<Permission>FULL_CONTROL</Permission></Grant>']
        if acl in ("public-read", "public-read-write"):
            grants.append(group(ALL_USERS, "READ"))
        if acl == "public-read-write":
            grants.append(group(ALL_USERS, "WRITE"))
        if acl == "authenticated-read":
            grants.append(group(AUTHENTICATED_USERS, "READ"))
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<AccessControlPolicy xmlns="{S3NS}">'
                f"<Owner><ID>{owner}</ID><DisplayName>{owner}</DisplayName></Owner>"
                f"<AccessControlList>{''.join(grants)}</AccessControlList></AccessControlPolicy>")


def ks3auth_sub_resources() -> set[str]:
    """Query names that make a request a sub-resource one (the SDK's signed list)."""
    return set(ks3auth.qsa_of_interest)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="0 picks a free port")
    p.add_argument("--upstream", required=True, help="S3 API base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--upstream-access-key", required=True, help="e.g. test:tester")
    p.add_argument("--upstream-secret-key", required=True)
    p.add_argument("--access-key", default=DEFAULT_ACCESS_KEY, help="the KS3 AccessKey clients use")
    p.add_argument("--secret-key", default=DEFAULT_SECRET_KEY, help="its SecretKey")
    args = p.parse_args(argv)

    Handler.access_key = args.access_key
    Handler.secret_key = args.secret_key
    Handler.upstream = Upstream(args.upstream, args.upstream_access_key, args.upstream_secret_key)
    Handler.table = SideTable()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    log(f"access_key={args.access_key} upstream={args.upstream} "
        f"upstream_access_key={args.upstream_access_key}")
    return serve_until_signalled(server, args.host)


if __name__ == "__main__":
    sys.exit(main())
