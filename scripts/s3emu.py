#!/usr/bin/env python3
"""s3emu: moto's S3+KMS server, made to behave like S3 where moto 5.2 does not,
plus quota gates and fault injection for testing `rekey`.

Run:  .venv/bin/python scripts/s3emu.py --host 127.0.0.1 --port 5000 \
          [--kms-rps N] [--s3-rps N] [--fail-rate F] [--embedded-error-rate F] \
          [--drop-rate F] [--drop-phase before|after] [--slowdown-rate F] [--stall-rate F]
          [--stall-ms N] [--latency-ms N] [--seed N] [--quiet]

One port serves S3 (path-style) and KMS (moto dispatches on the SigV4 credential scope /
X-Amz-Target), exactly like `moto_server`.

What the wrapper adds on top of moto (each absent from moto 5.2.5):
  1. UpdateObjectEncryption (PUT /{bucket}/{key}?encryption[&versionId=]) applied in place to
     moto's stored FakeKey: no new version, ETag/last-modified/metadata/storage class kept.
  2. KMS key checks on S3 writes naming a key (KMS.NotFoundException / KMS.DisabledException /
     KMS.KMSInvalidStateException / KMS.InvalidKeyUsageException, all 400) and the key reported
     back (and stored) as its full ARN.
  3. x-amz-copy-source-if-match / -if-none-match / -if-modified-since / -if-unmodified-since
     on CopyObject and UploadPartCopy (412 PreconditionFailed), checked atomically with the copy;
     If-Match / If-None-Match on CompleteMultipartUpload (412, or 404 when If-Match meets no
     object), checked against the key's current version.
  4. Opaque (non-MD5) ETags for SSE-KMS objects written by CopyObject, PutObject and
     CompleteMultipartUpload (multipart keeps S3's "-N" suffix).
  5. x-amz-website-redirect-location is not carried over by CopyObject.
  6. Quota gates: --kms-rps (requests that make S3 call KMS) and --s3-rps (all S3 requests),
     token buckets with burst max(1, N/10); throttled requests never reach moto.
  7. Faults on S3 object requests: 503 SlowDown (--slowdown-rate), 500 InternalError,
     200-with-embedded-error for CopyObject, dropped TCP connections (before or after the write),
     answers held back for --stall-ms after the write (past the client's timeout), added
     latency. With --seed, each decision is a hash of the seed, the operation, the object and
     the attempt number, so the same requests fail on every run whatever the interleaving.
  8. Control API under /__ (never throttled/faulted): GET /__stats, GET|POST /__config,
     POST /__reset_stats.
  9. x-amz-expected-bucket-owner (ExpectedBucketOwner) enforced on every S3 request: a bucket
     owned by another account answers 403 AccessDenied, as S3 does (moto ignores the header).
 10. Denied permissions, runtime config only: `POST /__config {"deny_ops": ["UpdateObjectEncryption"]}`
     answers every S3 request of those operations (names as in /__stats, e.g. CopyObject,
     HeadObject, GetBucketEncryption) with 403 AccessDenied and S3's explicit message naming the
     IAM action ("... is not authorized to perform: s3:UpdateObjectEncryption on resource: ...");
     `{"deny_ops": []}` lifts it. Checked before the quota gates and faults.
 11. GetBucketVersioning answers with S3's root element, <VersioningConfiguration> (moto writes
     <GetBucketVersioningResponse>, which strict SDKs such as aws-sdk-s3 for Rust refuse).
 12. ListMultipartUploads reports each upload's real initiation time (moto: always 2010-11-10),
     which rekey uses to find an upload it opened but could not record before a crash.
 13. GetBucketReplication answers the configuration as it was put (moto drops each rule's
     SourceSelectionCriteria, e.g. SseKmsEncryptedObjects, and its Filter prefix);
     DeleteBucketReplication forgets it.
 14. AWS managed keys: the key moto makes for a reserved alias (alias/aws/s3, ...) reports
     KeyManager AWS in DescribeKey (moto: CUSTOMER) and has the kind of key policy AWS gives
     it, usable only by callers in its own account through the service (kms:CallerAccount,
     kms:ViaService); PutKeyPolicy on it answers AccessDeniedException, as AWS refuses to
     change an AWS managed key's policy.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, unquote
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape as xml_escape

from werkzeug.serving import run_simple

from moto.core import DEFAULT_ACCOUNT_ID
from moto.kms.models import kms_backends
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.s3.models import s3_backends
from moto.utilities.utils import get_partition

DEFAULT_REGION = "us-east-1"
KMS_SSE = ("aws:kms", "aws:kms:dsse")
KMS_SLOWDOWN_MSG = "Please reduce your request rate for operations involving AWS KMS."
S3_SLOWDOWN_MSG = "Please reduce your request rate."
INTERNAL_MSG = "We encountered an internal error. Please try again."
KEY_ARN_RE = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")
# Object-level operations (the ones faults apply to).
OBJECT_OPS = {
    "CopyObject",
    "UpdateObjectEncryption",
    "HeadObject",
    "GetObject",
    "PutObject",
    "DeleteObject",
    "CreateMultipartUpload",
    "UploadPart",
    "UploadPartCopy",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "ListParts",
    "GetObjectTagging",
    "PutObjectTagging",
    "DeleteObjectTagging",
    "GetObjectAcl",
    "PutObjectAcl",
    "GetObjectAttributes",
    "GetObjectRetention",
    "PutObjectRetention",
    "GetObjectLegalHold",
    "PutObjectLegalHold",
    "RestoreObject",
}
WRITE_OPS = {
    "CopyObject",
    "UpdateObjectEncryption",
    "PutObject",
    "DeleteObject",
    "UploadPartCopy",
    "CompleteMultipartUpload",
    "PutObjectRetention",
    "PutObjectLegalHold",
}
CONFIG_KEYS = (
    "kms_rps", "s3_rps", "fail_rate", "embedded_error_rate", "drop_rate", "drop_phase", "latency_ms", "deny_ops",
    "slowdown_rate", "stall_rate", "stall_ms"
)
# The IAM action S3 checks for an operation, where it is not "s3:" + the operation's name.
IAM_ACTION = {
    "CopyObject": "s3:PutObject",
    "HeadObject": "s3:GetObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "UploadPartCopy": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "HeadBucket": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "GetBucketAcl": "s3:GetBucketAcl",
}


# --------------------------------------------------------------------------------------------
# small helpers


def request_id() -> str:
    return uuid.uuid4().hex[:16].upper()


def hdr(environ: dict[str, Any], name: str) -> str | None:
    key = "HTTP_" + name.upper().replace("-", "_")
    if name.lower() == "content-type":
        key = "CONTENT_TYPE"
    elif name.lower() == "content-length":
        key = "CONTENT_LENGTH"
    return environ.get(key)


def set_hdr(environ: dict[str, Any], name: str, value: str | None) -> None:
    key = "HTTP_" + name.upper().replace("-", "_")
    if value is None:
        environ.pop(key, None)
    else:
        environ[key] = value


def strip_etag(tag: str) -> str:
    tag = tag.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    return tag.strip('"')


def etag_matches(header_value: str, etag: str) -> bool:
    want = strip_etag(etag)
    for cand in header_value.split(","):
        cand = cand.strip()
        if cand == "*" or strip_etag(cand) == want:
            return True
    return False


def parse_http_date(value: str) -> datetime.datetime | None:
    try:
        dt = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        try:
            dt = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return dt


def decode_aws_chunked(data: bytes) -> bytes:
    """Decodes an aws-chunked body (`hex[;chunk-signature=..]\\r\\n<data>\\r\\n ... 0\\r\\n<trailers>`)."""
    out = bytearray()
    i = 0
    while i < len(data):
        j = data.index(b"\r\n", i)
        size = int(data[i:j].split(b";")[0].strip(), 16)
        i = j + 2
        if size == 0:
            break
        out += data[i : i + size]
        i += size + 2
    return bytes(out)


def read_body(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        data = stream.read()
    else:
        n = int(environ.get("CONTENT_LENGTH") or 0)
        data = stream.read(n) if n > 0 else b""
    encoding = (hdr(environ, "content-encoding") or "").lower()
    sha = hdr(environ, "x-amz-content-sha256") or ""
    if "aws-chunked" in encoding or sha.startswith("STREAMING-"):
        data = decode_aws_chunked(data)
    return data


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def child(el: ET.Element, name: str) -> ET.Element | None:
    for c in el:
        if local(c.tag) == name:
            return c
    return None


def error_xml(code: str, message: str, rid: str, extra: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{xml_escape(code)}</Code><Message>{xml_escape(message)}</Message>{extra}"
        f"<RequestId>{rid}</RequestId><HostId>{rid}</HostId></Error>"
    ).encode()


class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str, extra: str = ""):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


class TokenBucket:
    """Not thread-safe on its own: callers hold Emulator.lock."""

    def __init__(self, rate: float):
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        self.rate = float(rate)
        self.capacity = max(1.0, self.rate / 10.0)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


STATUS_TEXT = {
    200: "OK",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    412: "Precondition Failed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


# --------------------------------------------------------------------------------------------
# request classification


def credential_scope(environ: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(access_key, region, service) from a SigV4 Authorization header (or presigned query)."""
    auth = environ.get("HTTP_AUTHORIZATION") or ""
    m = re.search(r"Credential=([^/\s,]+)/\d{8}/([^/\s,]+)/([^/\s,]+)/aws4_request", auth)
    if not m:
        qs = parse_qs(environ.get("QUERY_STRING", ""))
        cred = (qs.get("X-Amz-Credential") or [""])[0]
        m = re.match(r"([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request", cred)
    if not m:
        return None, None, None
    return m.group(1), m.group(2), m.group(3).lower()


def split_path(environ: dict[str, Any]) -> tuple[str, str]:
    """(bucket, key) of a path-style request, both URL-decoded."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        path = raw.split("?", 1)[0]
        if "://" in path:  # absolute-form request target
            path = "/" + path.split("://", 1)[1].split("/", 1)[-1]
        path = unquote(path)
    else:
        path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")
    path = path[1:] if path.startswith("/") else path
    bucket, _, key = path.partition("/")
    return bucket, key


def s3_operation(method: str, bucket: str, key: str, query: dict[str, list[str]], environ: dict[str, Any]) -> str:
    copy = hdr(environ, "x-amz-copy-source") is not None
    if not bucket:
        return "ListBuckets" if method == "GET" else "Other"
    if not key:
        if method == "GET":
            if "versions" in query:
                return "ListObjectVersions"
            if "uploads" in query:
                return "ListMultipartUploads"
            if query.get("list-type") == ["2"]:
                return "ListObjectsV2"
            for q, name in (
                ("versioning", "GetBucketVersioning"),
                ("encryption", "GetBucketEncryption"),
                ("object-lock", "GetObjectLockConfiguration"),
                ("location", "GetBucketLocation"),
                ("tagging", "GetBucketTagging"),
                ("policy", "GetBucketPolicy"),
                ("acl", "GetBucketAcl"),
                ("inventory", "GetBucketInventoryConfiguration"),
                ("replication", "GetBucketReplication"),
            ):
                if q in query:
                    return name
            if not query or set(query) <= {"prefix", "delimiter", "marker", "max-keys", "encoding-type"}:
                return "ListObjects"
            return "Other"
        if method == "HEAD":
            return "HeadBucket"
        if method == "PUT":
            for q, name in (
                ("versioning", "PutBucketVersioning"),
                ("encryption", "PutBucketEncryption"),
                ("object-lock", "PutObjectLockConfiguration"),
                ("tagging", "PutBucketTagging"),
                ("policy", "PutBucketPolicy"),
                ("acl", "PutBucketAcl"),
                ("inventory", "PutBucketInventoryConfiguration"),
                ("replication", "PutBucketReplication"),
            ):
                if q in query:
                    return name
            return "CreateBucket" if not query else "Other"
        if method == "DELETE":
            if "replication" in query:
                return "DeleteBucketReplication"
            return "DeleteBucket" if not query else "Other"
        if method == "POST" and "delete" in query:
            return "DeleteObjects"
        return "Other"
    if method == "PUT":
        if "encryption" in query:
            return "UpdateObjectEncryption"
        if "partNumber" in query and "uploadId" in query:
            return "UploadPartCopy" if copy else "UploadPart"
        for q, name in (
            ("tagging", "PutObjectTagging"),
            ("acl", "PutObjectAcl"),
            ("retention", "PutObjectRetention"),
            ("legal-hold", "PutObjectLegalHold"),
        ):
            if q in query:
                return name
        return "CopyObject" if copy else "PutObject"
    if method == "GET":
        for q, name in (
            ("tagging", "GetObjectTagging"),
            ("acl", "GetObjectAcl"),
            ("uploadId", "ListParts"),
            ("attributes", "GetObjectAttributes"),
            ("retention", "GetObjectRetention"),
            ("legal-hold", "GetObjectLegalHold"),
        ):
            if q in query:
                return name
        return "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        if "restore" in query:
            return "RestoreObject"
        return "Other"
    if method == "DELETE":
        if "uploadId" in query:
            return "AbortMultipartUpload"
        if "tagging" in query:
            return "DeleteObjectTagging"
        return "DeleteObject"
    return "Other"


# --------------------------------------------------------------------------------------------
# the middleware


class Emulator:
    def __init__(self, app: Callable[..., Iterable[bytes]], config: dict[str, Any], seed: int | None):
        self.app = app
        self.lock = threading.Lock()  # counters, buckets, rng, config
        self.write_lock = threading.RLock()  # serializes object writes (atomic preconditions)
        # With a seed, every fault decision is a pure function of (seed, fault, operation,
        # bucket, key, how many times this operation was sent for that key): the same objects
        # get the same faults on every run, however the client interleaves its requests.
        # Without one, faults are drawn at random.
        self.seed = seed
        self.rng = random.Random(seed)
        self.sent: dict[tuple[str, str, str], int] = {}
        self.upload_initiated: dict[str, str] = {}  # upload id -> S3-style Initiated time
        self.replication: dict[tuple[str, str], bytes] = {}  # (account, bucket) -> the XML put
        self.config: dict[str, Any] = {
            "kms_rps": 0.0,
            "s3_rps": 0.0,
            "fail_rate": 0.0,
            "embedded_error_rate": 0.0,
            "drop_rate": 0.0,
            "drop_phase": "before",
            "latency_ms": 0.0,
            "deny_ops": [],
            "slowdown_rate": 0.0,
            "stall_rate": 0.0,
            "stall_ms": 0.0,
        }
        self.kms_bucket = TokenBucket(0)
        self.s3_bucket = TokenBucket(0)
        self.apply_config(config)
        self.started = time.monotonic()
        self.reset_stats()

    # ---- config / stats -------------------------------------------------------------------

    def apply_config(self, update: dict[str, Any]) -> dict[str, Any]:
        unknown = set(update) - set(CONFIG_KEYS)
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        clean: dict[str, Any] = {}
        for k, v in update.items():
            if k == "drop_phase":
                if v not in ("before", "after"):
                    raise ValueError("drop_phase must be 'before' or 'after'")
                clean[k] = v
                continue
            if k == "deny_ops":
                if not isinstance(v, list) or not all(isinstance(op, str) for op in v):
                    raise ValueError("deny_ops must be a list of S3 operation names")
                clean[k] = list(v)
                continue
            fv = float(v)
            if fv < 0 or (k.endswith("_rate") and fv > 1):
                raise ValueError(f"{k} out of range: {v}")
            clean[k] = fv
        with self.lock:
            self.config.update(clean)
            if "kms_rps" in clean:
                self.kms_bucket.set_rate(clean["kms_rps"])
            if "s3_rps" in clean:
                self.s3_bucket.set_rate(clean["s3_rps"])
            return dict(self.config)

    def reset_stats(self) -> None:
        with self.lock:
            self.requests: dict[str, int] = {}
            self.statuses: dict[str, int] = {}
            self.throttled_kms = 0
            self.throttled_s3 = 0
            self.faults = {"500": 0, "embedded": 0, "dropped": 0, "slowdown": 0, "stalled": 0}
            self.kms_calls = 0
            self.precondition_failed = 0

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": dict(self.requests),
                "status": dict(self.statuses),
                "throttled_kms": self.throttled_kms,
                "throttled_s3": self.throttled_s3,
                "faults": dict(self.faults),
                "kms_calls": self.kms_calls,
                "precondition_failed": self.precondition_failed,
                "config": dict(self.config),
                "uptime_s": round(time.monotonic() - self.started, 3),
            }

    def count(self, op: str) -> None:
        with self.lock:
            self.requests[op] = self.requests.get(op, 0) + 1

    # ---- responses ------------------------------------------------------------------------

    @staticmethod
    def respond(
        start_response: Any, status: int, body: bytes, headers: list[tuple[str, str]] | None = None,
        content_type: str = "application/xml",
    ) -> list[bytes]:
        hs = [(k, v) for k, v in (headers or []) if k.lower() not in ("content-length", "content-type")]
        if body or content_type:
            hs.append(("Content-Type", content_type))
        hs.append(("Content-Length", str(len(body))))
        start_response(f"{status} {STATUS_TEXT.get(status, 'Status')}", hs)
        return [body]

    def s3_error(self, environ: dict[str, Any], start_response: Any, err: S3Error) -> list[bytes]:
        rid = request_id()
        body = b"" if environ.get("REQUEST_METHOD") == "HEAD" else error_xml(err.code, err.message, rid, err.extra)
        with self.lock:
            self.statuses[str(err.status)] = self.statuses.get(str(err.status), 0) + 1
            if err.status == 412:
                self.precondition_failed += 1
        return self.respond(
            start_response, err.status, body, [("x-amz-request-id", rid), ("x-amz-id-2", rid)]
        )

    def call_moto(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        captured: dict[str, Any] = {}
        chunks: list[bytes] = []

        def sr(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"] = status
            captured["headers"] = list(headers)
            return chunks.append

        it = self.app(environ, sr)
        try:
            for c in it:
                chunks.append(c)
        finally:
            close = getattr(it, "close", None)
            if close:
                close()
        return captured["status"], captured["headers"], b"".join(chunks)

    def counting(self, start_response: Any) -> Any:
        def sr(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            with self.lock:
                code = status.split(" ", 1)[0]
                self.statuses[code] = self.statuses.get(code, 0) + 1
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        return sr

    def send(self, start_response: Any, status: str, headers: list[tuple[str, str]], body: bytes) -> list[bytes]:
        hs = [(k, v) for k, v in headers if k.lower() != "content-length"]
        hs.append(("Content-Length", str(len(body))))
        start_response(status, hs)
        with self.lock:
            code = status.split(" ", 1)[0]
            self.statuses[code] = self.statuses.get(code, 0) + 1
        return [body]

    @staticmethod
    def drop_connection(environ: dict[str, Any]) -> None:
        sock = environ.get("werkzeug.socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        # werkzeug treats ConnectionError as "client went away" and writes nothing.
        raise ConnectionResetError("s3emu: injected connection drop")

    # ---- moto state access -----------------------------------------------------------------

    @staticmethod
    def account(access_key: str | None) -> str:
        if access_key:
            try:
                from moto.iam.models import get_account_id_from

                return get_account_id_from(access_key)
            except Exception:
                pass
        return os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)

    @staticmethod
    def s3_backend(account: str, region: str) -> Any:
        return s3_backends[account][get_partition(region)]

    @staticmethod
    def find_bucket(backend: Any, name: str) -> Any:
        return backend.buckets.get(name)

    @staticmethod
    def find_key(bucket: Any, key: str, version_id: str | None) -> Any:
        """The FakeKey (or delete marker / None) for key[/version], without side effects."""
        if bucket is None:
            return None
        if version_id is None:
            return bucket.keys[key] if key in bucket.keys else None
        for v in bucket.keys.getlist(key, default=[]):
            if str(v.version_id) == str(version_id):
                return v
        return None

    @staticmethod
    def resolve_kms_key(ref: str, account: str, region: str) -> Any:
        m = re.match(r"^arn:[\w-]+:kms:([\w-]+):(\d{12}):(key|alias)/", ref)
        if m:
            region, account = m.group(1), m.group(2)
        try:
            backend = kms_backends[account][region]
            return backend.keys.get(backend.any_id_to_key_id(ref))
        except Exception:
            return None

    def check_kms_key(self, ref: str, account: str, region: str) -> Any:
        key = self.resolve_kms_key(ref, account, region)
        if key is None:
            raise S3Error(400, "KMS.NotFoundException", f"Invalid keyId '{ref}' (key does not exist)")
        state = getattr(key, "key_state", "Enabled")
        if state == "Disabled":
            raise S3Error(400, "KMS.DisabledException", f"{key.arn} is disabled.")
        if state != "Enabled":
            raise S3Error(400, "KMS.KMSInvalidStateException", f"{key.arn} is {state_text(state)}.")
        usage = getattr(key, "key_usage", None) or "ENCRYPT_DECRYPT"  # moto stores None when defaulted
        spec = getattr(key, "key_spec", None) or "SYMMETRIC_DEFAULT"
        if usage != "ENCRYPT_DECRYPT" or spec != "SYMMETRIC_DEFAULT":
            raise S3Error(
                400, "KMS.InvalidKeyUsageException", f"{key.arn} is not a symmetric encryption key."
            )
        return key

    # ---- main entry ---------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/__"):
            return self.control(environ, start_response, path)
        if path.startswith("/moto-api"):
            return self.app(environ, start_response)
        access_key, region, service = credential_scope(environ)
        target = environ.get("HTTP_X_AMZ_TARGET") or ""
        if service == "kms" or target.startswith("TrentService."):
            self.count("KMS." + (target.split(".", 1)[1] if "." in target else "Unknown"))
            return self.handle_kms(environ, start_response, access_key, region or DEFAULT_REGION, target)
        if service not in (None, "s3"):
            return self.app(environ, start_response)
        try:
            return self.handle_s3(environ, start_response, access_key, region or DEFAULT_REGION)
        except S3Error as err:
            return self.s3_error(environ, start_response, err)

    def handle_s3(self, environ: dict[str, Any], start_response: Any, access_key: str | None, region: str) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        bucket_name, key_name = split_path(environ)
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        op = s3_operation(method, bucket_name, key_name, query, environ)
        self.count(op)
        account = self.account(access_key)
        backend = self.s3_backend(account, region)
        is_object = op in OBJECT_OPS

        # permissions: denied operations, and ExpectedBucketOwner (before gates and faults)
        with self.lock:
            denied = op in self.config["deny_ops"]
        if denied:
            action = IAM_ACTION.get(op, "s3:" + op)
            resource = f"arn:aws:s3:::{bucket_name}" + (f"/{key_name}" if key_name else "")
            raise S3Error(403, "AccessDenied",
                          f"User: arn:aws:iam::{account}:user/s3emu is not authorized to perform: {action} "
                          f"on resource: \"{resource}\" because no identity-based policy allows the {action} action")
        expected_owner = hdr(environ, "x-amz-expected-bucket-owner")
        if expected_owner is not None and bucket_name:
            owned = self.find_bucket(backend, bucket_name)
            if owned is not None and str(getattr(owned, "account_id", account)) != expected_owner.strip():
                raise S3Error(403, "AccessDenied", "Access Denied")

        with self.lock:
            latency = self.config["latency_ms"] if is_object else 0.0
        if latency > 0:
            time.sleep(latency / 1000.0)

        # quota gates (before anything reaches moto)
        with self.lock:
            s3_ok = self.s3_bucket.take()
            if not s3_ok:
                self.throttled_s3 += 1
        if not s3_ok:
            raise S3Error(503, "SlowDown", S3_SLOWDOWN_MSG)
        uses_kms = self.uses_kms(op, backend, bucket_name, query, environ)
        if uses_kms:
            with self.lock:
                kms_ok = self.kms_bucket.take()
                if not kms_ok:
                    self.throttled_kms += 1
            if not kms_ok:
                raise S3Error(503, "SlowDown", KMS_SLOWDOWN_MSG)

        # faults (object requests only)
        drop_after = False
        stall_s = 0.0
        if is_object:
            with self.lock:
                draw = self.fault_draws(op, bucket_name, key_name)
                cfg = self.config
                slowdown = draw("slowdown") < cfg["slowdown_rate"]
                drop = not slowdown and draw("drop") < cfg["drop_rate"]
                fail = not (slowdown or drop) and draw("fail") < cfg["fail_rate"]
                embedded = (not (slowdown or drop or fail) and op == "CopyObject"
                            and draw("embedded") < cfg["embedded_error_rate"])
                stall = not (slowdown or drop or fail or embedded) and draw("stall") < cfg["stall_rate"]
                phase = cfg["drop_phase"]
                if slowdown:
                    # Counted as an S3 throttle too: to the client it is one.
                    self.faults["slowdown"] += 1
                    self.throttled_s3 += 1
                elif drop:
                    self.faults["dropped"] += 1
                elif fail:
                    self.faults["500"] += 1
                elif embedded:
                    self.faults["embedded"] += 1
                elif stall:
                    self.faults["stalled"] += 1
                    stall_s = cfg["stall_ms"] / 1000.0
            if slowdown:
                raise S3Error(503, "SlowDown", S3_SLOWDOWN_MSG)
            if drop and phase == "before":
                self.drop_connection(environ)
            drop_after = drop
            if fail:
                raise S3Error(500, "InternalError", INTERNAL_MSG)
            if embedded:
                rid = request_id()
                body = (
                    f"<Error><Code>InternalError</Code><Message>{INTERNAL_MSG}</Message>"
                    f"<RequestId>{rid}</RequestId><HostId>{rid}</HostId></Error>"
                ).encode()
                return self.send(
                    start_response,
                    "200 OK",
                    [("Content-Type", "application/xml"), ("x-amz-request-id", rid), ("x-amz-id-2", rid)],
                    body,
                )

        ctx = {
            "op": op,
            "account": account,
            "region": region,
            "backend": backend,
            "bucket": bucket_name,
            "key": key_name,
            "query": query,
        }
        if op in WRITE_OPS:
            with self.write_lock:
                status, headers, body = self.dispatch(environ, ctx)
        else:
            status, headers, body = self.dispatch(environ, ctx)
        if status is None:  # pass-through op: stream moto's response as is
            if stall_s > 0:
                time.sleep(stall_s)
            if drop_after:
                self.call_moto(environ)
                self.drop_connection(environ)
            return self.app(environ, self.counting(start_response))
        if status.startswith("2") and uses_kms and b"<Error>" not in body[:200]:
            with self.lock:
                self.kms_calls += 1
        if drop_after:
            self.drop_connection(environ)
        if stall_s > 0:
            # The write is done; the answer comes late, after the client gave up on it.
            time.sleep(stall_s)
        return self.send(start_response, status, headers, body)

    def fault_draws(self, op: str, bucket: str, key: str) -> Callable[[str], float]:
        """Numbers in [0, 1) for this request's fault decisions (call with self.lock held)."""
        if self.seed is None:
            return lambda _fault: self.rng.random()
        ident = (op, bucket or "", key or "")
        nth = self.sent.get(ident, 0)
        self.sent[ident] = nth + 1

        def draw(fault: str) -> float:
            digest = hashlib.sha256(f"{self.seed}|{fault}|{op}|{bucket}|{key}|{nth}".encode()).digest()
            return int.from_bytes(digest[:8], "big") / 2.0**64

        return draw

    def uses_kms(self, op: str, backend: Any, bucket_name: str, query: dict[str, list[str]], environ: dict[str, Any]) -> bool:
        if op == "UpdateObjectEncryption":
            return True
        if op in ("PutObject", "CopyObject", "CreateMultipartUpload"):
            sse = hdr(environ, "x-amz-server-side-encryption")
            if sse is None:
                bucket = self.find_bucket(backend, bucket_name)
                enc = getattr(bucket, "encryption", None) if bucket is not None else None
                try:
                    sse = enc["Rule"]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] if enc else None
                except (KeyError, TypeError):
                    sse = None
            return sse in KMS_SSE
        if op in ("UploadPartCopy", "UploadPart"):
            bucket = self.find_bucket(backend, bucket_name)
            upload = bucket.multiparts.get((query.get("uploadId") or [""])[0]) if bucket is not None else None
            return upload is not None and getattr(upload, "sse_encryption", None) in KMS_SSE
        return False

    def dispatch(self, environ: dict[str, Any], ctx: dict[str, Any]) -> tuple[Any, Any, Any]:
        """Returns (status, headers, body) for handled ops, (None, None, None) for pass-through."""
        op = ctx["op"]
        if op == "UpdateObjectEncryption":
            return self.update_object_encryption(environ, ctx)
        if op in ("PutObject", "CopyObject", "CreateMultipartUpload"):
            self.normalize_kms_key_header(environ, ctx)
        if op in ("CopyObject", "UploadPartCopy"):
            self.check_copy_preconditions(environ, ctx)
        if op == "CopyObject":
            return self.copy_object(environ, ctx)
        if op == "PutObject":
            return self.put_object(environ, ctx)
        if op == "CompleteMultipartUpload":
            return self.complete_multipart(environ, ctx)
        if op == "GetBucketVersioning":
            return self.get_bucket_versioning(environ)
        if op == "CreateMultipartUpload":
            return self.create_multipart(environ)
        if op == "ListMultipartUploads":
            return self.list_multipart_uploads(environ)
        if op in ("PutBucketReplication", "GetBucketReplication", "DeleteBucketReplication"):
            return self.bucket_replication(environ, ctx)
        return None, None, None

    # moto keeps a parsed replication configuration that loses SourceSelectionCriteria (so
    # SseKmsEncryptedObjects) and the rule filters: answer with what was put.
    def bucket_replication(self, environ: dict[str, Any], ctx: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        ident = (ctx["account"], ctx["bucket"])
        if ctx["op"] == "PutBucketReplication":
            body = read_body(environ)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("wsgi.input_terminated", None)
            set_hdr(environ, "content-encoding", None)
            set_hdr(environ, "x-amz-content-sha256", "UNSIGNED-PAYLOAD")
            status, headers, answer = self.call_moto(environ)
            if status.startswith("2"):
                with self.lock:
                    self.replication[ident] = body
            return status, headers, answer
        status, headers, answer = self.call_moto(environ)
        with self.lock:
            if ctx["op"] == "DeleteBucketReplication" and status.startswith("2"):
                self.replication.pop(ident, None)
            stored = self.replication.get(ident)
        if ctx["op"] == "GetBucketReplication" and status.startswith("2") and stored is not None:
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(stored))))
            return status, headers, stored
        return status, headers, answer

    # ---- KMS ------------------------------------------------------------------------------

    def handle_kms(self, environ: dict[str, Any], start_response: Any, access_key: str | None, region: str, target: str) -> Iterable[bytes]:
        op = target.split(".", 1)[1] if "." in target else ""
        if op not in ("DescribeKey", "GetKeyPolicy", "PutKeyPolicy"):
            return self.app(environ, start_response)
        body = read_body(environ)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("wsgi.input_terminated", None)
        try:
            key_ref = json.loads(body or b"{}").get("KeyId") or ""
        except ValueError:
            key_ref = ""
        account = self.account(access_key)
        m = re.match(r"^arn:[\w-]+:kms:([\w-]+):(\d{12}):", key_ref)
        if m:
            region, account = m.group(1), m.group(2)
        try:
            backend = kms_backends[account][region]
            if key_ref.startswith("alias/aws/"):
                backend.get_key_id_from_alias(key_ref)  # moto makes the key on first use
        except Exception:
            backend = None
        if backend is not None:
            self.mark_aws_managed(backend, region, account)
        key = self.resolve_kms_key(key_ref, account, region) if key_ref else None
        if op == "PutKeyPolicy" and key is not None and getattr(key, "key_manager", "") == "AWS":
            payload = json.dumps({
                "__type": "AccessDeniedException",
                "message": f"You cannot change the key policy of the AWS managed key {key.arn}.",
            }).encode()
            return self.respond_json(start_response, 400, payload)
        return self.app(environ, start_response)

    @staticmethod
    def mark_aws_managed(backend: Any, region: str, account: str) -> None:
        for key in list(backend.keys.values()):
            aliases = list(getattr(key, "aliases", {}) or {})
            service = next((a[len("alias/aws/"):] for a in aliases if a.startswith("alias/aws/")), None)
            if service is None or getattr(key, "key_manager", "") == "AWS":
                continue
            key.key_manager = "AWS"
            key.policy = json.dumps({
                "Version": "2012-10-17",
                "Id": f"auto-{service}-2",
                "Statement": [
                    {
                        "Sid": f"Allow access through {service} for all principals in the account that are authorized to use {service}",
                        "Effect": "Allow",
                        "Principal": {"AWS": "*"},
                        "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
                        "Resource": "*",
                        "Condition": {"StringEquals": {"kms:CallerAccount": account, "kms:ViaService": f"{service}.{region}.amazonaws.com"}},
                    },
                    {
                        "Sid": "Allow direct access to key metadata to the account",
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                        "Action": ["kms:Describe*", "kms:Get*", "kms:List*"],
                        "Resource": "*",
                    },
                ],
            })

    def respond_json(self, start_response: Any, status: int, payload: bytes) -> list[bytes]:
        reason = {400: "Bad Request"}.get(status, "Error")
        start_response(f"{status} {reason}", [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(payload)))])
        return [payload]

    # moto reports every upload as initiated on 2010-11-10; S3 reports the real time, which
    # rekey uses to find an upload it opened but could not record before a crash.
    def create_multipart(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        status, headers, body = self.call_moto(environ)
        m = re.search(rb"<UploadId>([^<]+)</UploadId>", body)
        if status.startswith("2") and m:
            now = datetime.datetime.now(datetime.timezone.utc)
            with self.lock:
                self.upload_initiated[m.group(1).decode()] = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
        return status, headers, body

    def list_multipart_uploads(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        status, headers, body = self.call_moto(environ)
        with self.lock:
            known = dict(self.upload_initiated)

        def fix(upload: "re.Match[bytes]") -> bytes:
            block = upload.group(0)
            uid = re.search(rb"<UploadId>([^<]+)</UploadId>", block)
            when = known.get(uid.group(1).decode()) if uid else None
            if when is None:
                return block
            return re.sub(rb"<Initiated>[^<]*</Initiated>", b"<Initiated>" + when.encode() + b"</Initiated>", block)

        body = re.sub(rb"<Upload>.*?</Upload>", fix, body, flags=re.S)
        headers = [(k, str(len(body)) if k.lower() == "content-length" else v) for k, v in headers]
        return status, headers, body

    # ---- behaviours -----------------------------------------------------------------------------

    def normalize_kms_key_header(self, environ: dict[str, Any], ctx: dict[str, Any]) -> None:
        """KMS key existence/state check + rewrite the key id to its full ARN (S3 reports ARNs)."""
        sse = hdr(environ, "x-amz-server-side-encryption")
        ref = hdr(environ, "x-amz-server-side-encryption-aws-kms-key-id")
        if sse not in KMS_SSE or not ref:
            return
        key = self.check_kms_key(ref.strip(), ctx["account"], ctx["region"])
        set_hdr(environ, "x-amz-server-side-encryption-aws-kms-key-id", key.arn)

    def copy_source(self, environ: dict[str, Any], ctx: dict[str, Any]) -> Any:
        raw = hdr(environ, "x-amz-copy-source") or ""
        src, _, q = raw.partition("?")
        src = unquote(src).lstrip("/")
        src_bucket, _, src_key = src.partition("/")
        version = (parse_qs(q).get("versionId") or [None])[0]
        bucket = self.find_bucket(ctx["backend"], src_bucket)
        key = self.find_key(bucket, src_key, version)
        if key is None or not hasattr(key, "etag"):
            return None
        return key

    def check_copy_preconditions(self, environ: dict[str, Any], ctx: dict[str, Any]) -> None:
        if_match = hdr(environ, "x-amz-copy-source-if-match")
        if_none = hdr(environ, "x-amz-copy-source-if-none-match")
        if_unmod = hdr(environ, "x-amz-copy-source-if-unmodified-since")
        if_mod = hdr(environ, "x-amz-copy-source-if-modified-since")
        if not any((if_match, if_none, if_unmod, if_mod)):
            return
        src = self.copy_source(environ, ctx)
        if src is None:
            return  # moto answers NoSuchKey / NoSuchVersion
        etag = src.etag
        modified = src.last_modified.replace(microsecond=0)
        if modified.tzinfo is not None:
            modified = modified.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        # S3 rules: if-match true overrides a false if-unmodified-since; if-none-match false
        # with if-modified-since true still fails (412).
        if if_match is not None:
            if not etag_matches(if_match, etag):
                raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                              "<Condition>x-amz-copy-source-If-Match</Condition>")
        elif if_unmod is not None:
            when = parse_http_date(if_unmod)
            if when is not None and modified > when:
                raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                              "<Condition>x-amz-copy-source-If-Unmodified-Since</Condition>")
        if if_none is not None:
            if etag_matches(if_none, etag):
                raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                              "<Condition>x-amz-copy-source-If-None-Match</Condition>")
        elif if_mod is not None:
            when = parse_http_date(if_mod)
            if when is not None and modified <= when:
                raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                              "<Condition>x-amz-copy-source-If-Modified-Since</Condition>")
        # handled here; keep moto from re-checking with its narrower parser
        set_hdr(environ, "x-amz-copy-source-if-none-match", None)

    def written_key(self, ctx: dict[str, Any], headers: list[tuple[str, str]]) -> Any:
        bucket = self.find_bucket(ctx["backend"], ctx["bucket"])
        version = next((v for k, v in headers if k.lower() == "x-amz-version-id"), None)
        if version in (None, "null"):
            version = None
        key = self.find_key(bucket, ctx["key"], version)
        return key if key is not None and hasattr(key, "etag") else None

    @staticmethod
    def opaque_etag(key: Any) -> str:
        old = strip_etag(key.etag)
        suffix = "-" + old.rsplit("-", 1)[1] if "-" in old else ""
        new = uuid.uuid4().hex + suffix
        key._etag = new
        return f'"{new}"'

    @staticmethod
    def replace_etag(headers: list[tuple[str, str]], body: bytes, etag: str) -> tuple[list[tuple[str, str]], bytes]:
        headers = [(k, etag if k.lower() == "etag" else v) for k, v in headers]
        body = re.sub(rb"<ETag>.*?</ETag>", b"<ETag>" + xml_escape(etag, {'"': "&quot;"}).encode() + b"</ETag>", body, count=1)
        return headers, body

    def mark_sse_c(self, environ: dict[str, Any], key: Any) -> None:
        if hdr(environ, "x-amz-server-side-encryption-customer-algorithm"):
            key._s3emu_sse_c = True

    def put_object(self, environ: dict[str, Any], ctx: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        status, headers, body = self.call_moto(environ)
        if status.startswith("2"):
            key = self.written_key(ctx, headers)
            if key is not None:
                self.mark_sse_c(environ, key)
                if key.encryption in KMS_SSE:
                    headers, body = self.replace_etag(headers, body, self.opaque_etag(key))
        return status, headers, body

    def copy_object(self, environ: dict[str, Any], ctx: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        status, headers, body = self.call_moto(environ)
        if not status.startswith("2") or b"<Error>" in body[:200]:
            return status, headers, body
        key = self.written_key(ctx, headers)
        if key is None:
            return status, headers, body
        self.mark_sse_c(environ, key)
        if key.encryption in KMS_SSE:
            headers, body = self.replace_etag(headers, body, self.opaque_etag(key))
        if hdr(environ, "x-amz-website-redirect-location") is None:
            key.website_redirect_location = None
            # moto also keeps it in the user-settable metadata it copies with COPY directive
            meta = key.metadata
            for name in [n for n in list(meta.keys()) if str(n).lower() == "x-amz-website-redirect-location"]:
                del meta[name]
            headers = [(k, v) for k, v in headers if k.lower() != "x-amz-website-redirect-location"]
        return status, headers, body

    def complete_multipart(self, environ: dict[str, Any], ctx: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        bucket = self.find_bucket(ctx["backend"], ctx["bucket"])
        upload_id = (ctx["query"].get("uploadId") or [""])[0]
        upload = bucket.multiparts.get(upload_id) if bucket is not None else None
        if upload is not None:
            self.check_write_preconditions(environ, bucket, ctx["key"])
        status, headers, body = self.call_moto(environ)
        if upload is None or not status.startswith("2") or b"<Error>" in body[:200]:
            return status, headers, body
        key = self.written_key(ctx, headers)
        if key is not None and (key.encryption in KMS_SSE or upload.sse_encryption in KMS_SSE):
            headers, body = self.replace_etag(headers, body, self.opaque_etag(key))
        return status, headers, body

    def check_write_preconditions(self, environ: dict[str, Any], bucket: Any, key_name: str) -> None:
        """S3's conditional writes (If-Match / If-None-Match) against the key's current
        version, checked under the write lock, so atomically with the write. moto 5.2 ignores
        If-Match on CompleteMultipartUpload, which would let a test of rekey's guard pass
        whether or not the guard is sent."""
        if_match = hdr(environ, "if-match")
        if_none = hdr(environ, "if-none-match")
        if if_match is None and if_none is None:
            return
        current = self.find_key(bucket, key_name, None)
        exists = current is not None and hasattr(current, "etag") and not getattr(current, "is_delete_marker", False)
        if if_match is not None:
            if not exists:
                raise S3Error(404, "NoSuchKey", "The specified key does not exist.",
                              f"<Key>{xml_escape(key_name)}</Key>")
            if not etag_matches(if_match, current.etag):
                raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                              "<Condition>If-Match</Condition>")
        if if_none is not None and exists and etag_matches(if_none, current.etag):
            raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                          "<Condition>If-None-Match</Condition>")
        # handled here; keep moto from applying its own narrower version
        set_hdr(environ, "if-match", None)
        set_hdr(environ, "if-none-match", None)

    def get_bucket_versioning(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        status, headers, body = self.call_moto(environ)
        if status.startswith("2"):
            body = re.sub(rb"<(/?)GetBucketVersioningResponse\b", rb"<\1VersioningConfiguration", body)
        return status, headers, body

    def update_object_encryption(self, environ: dict[str, Any], ctx: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        body = read_body(environ)
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            raise S3Error(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema")
        sse_kms = child(root, "SSE-KMS") if local(root.tag) == "ObjectEncryption" else None
        arn_el = child(sse_kms, "KMSKeyArn") if sse_kms is not None else None
        if arn_el is None or not (arn_el.text or "").strip():
            raise S3Error(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema")
        arn = arn_el.text.strip()
        bke_el = child(sse_kms, "BucketKeyEnabled")
        bucket_key = None
        if bke_el is not None and (bke_el.text or "").strip():
            bucket_key = "true" if bke_el.text.strip().lower() == "true" else "false"
        if not KEY_ARN_RE.match(arn):
            raise S3Error(400, "InvalidArgument", "The KMSKeyArn must be a full KMS key ARN (key ID and alias are not accepted).",
                          f"<ArgumentName>KMSKeyArn</ArgumentName><ArgumentValue>{xml_escape(arn)}</ArgumentValue>")

        bucket = self.find_bucket(ctx["backend"], ctx["bucket"])
        if bucket is None:
            raise S3Error(404, "NoSuchBucket", "The specified bucket does not exist",
                          f"<BucketName>{xml_escape(ctx['bucket'])}</BucketName>")
        version = (ctx["query"].get("versionId") or [None])[0]
        if version == "":
            version = None
        key = self.find_key(bucket, ctx["key"], version)
        if key is None or not hasattr(key, "etag"):  # missing or a delete marker
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.", f"<Key>{xml_escape(ctx['key'])}</Key>")

        if getattr(key, "_s3emu_sse_c", False):
            raise S3Error(400, "InvalidRequest", "UpdateObjectEncryption is not supported for objects encrypted with SSE-C.")
        if key.encryption is None:
            raise S3Error(400, "InvalidRequest", "UpdateObjectEncryption is not supported for unencrypted (NOT-SSE) objects.")
        if key.encryption == "aws:kms:dsse":
            raise S3Error(400, "InvalidRequest", "UpdateObjectEncryption is not supported for objects encrypted with DSSE-KMS.")
        if (key.lock_legal_status or "").upper() == "ON":
            raise S3Error(400, "InvalidRequest", "UpdateObjectEncryption is not supported for objects with an Object Lock legal hold.")
        if key.lock_mode:
            raise S3Error(400, "InvalidRequest", "UpdateObjectEncryption is not supported for objects with an Object Lock retention mode.")

        kms_key = self.check_kms_key(arn, ctx["account"], ctx["region"])
        # apply in place: no new version, etag/last-modified/metadata/storage class untouched
        key.encryption = "aws:kms"
        key.kms_key_id = kms_key.arn
        key.bucket_key_enabled = bucket_key
        rid = request_id()
        return "200 OK", [("x-amz-request-id", rid), ("x-amz-id-2", rid)], b""

    # ---- control API ----------------------------------------------------------------------------

    def control(self, environ: dict[str, Any], start_response: Any, path: str) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")

        def js(status: int, obj: Any) -> list[bytes]:
            return self.respond(start_response, status, json.dumps(obj).encode(), content_type="application/json")

        if path == "/__stats" and method == "GET":
            return js(200, self.stats())
        if path == "/__config" and method == "GET":
            with self.lock:
                return js(200, dict(self.config))
        if path == "/__config" and method == "POST":
            try:
                raw = read_body(environ)
                update = json.loads(raw or b"{}")
                if not isinstance(update, dict):
                    raise ValueError("body must be a JSON object")
                return js(200, self.apply_config(update))
            except (ValueError, TypeError) as e:
                return js(400, {"error": str(e)})
        if path == "/__reset_stats" and method == "POST":
            self.reset_stats()
            return js(200, {"ok": True})
        return js(404, {"error": f"unknown control endpoint {method} {path}"})


def state_text(state: str) -> str:
    return {"PendingDeletion": "pending deletion", "PendingImport": "pending import"}.get(state, state)


class QuietHandler(MotoRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # noqa: D102
        pass


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", "-H", default="127.0.0.1")
    p.add_argument("--port", "-p", type=int, default=int(os.environ.get("MOTO_PORT", 5000)))
    p.add_argument("--kms-rps", type=float, default=0.0, help="KMS-involving request quota (0 = off)")
    p.add_argument("--s3-rps", type=float, default=0.0, help="S3 request quota (0 = off)")
    p.add_argument("--fail-rate", type=float, default=0.0, help="probability of 500 InternalError")
    p.add_argument("--embedded-error-rate", type=float, default=0.0, help="CopyObject 200-with-<Error> probability")
    p.add_argument("--drop-rate", type=float, default=0.0, help="probability of closing the connection unanswered")
    p.add_argument("--drop-phase", choices=("before", "after"), default="before",
                   help="drop before moto handles the request (default) or after (side effects happen)")
    p.add_argument("--slowdown-rate", type=float, default=0.0, help="probability of 503 SlowDown")
    p.add_argument("--stall-rate", type=float, default=0.0,
                   help="probability of holding the answer back --stall-ms after the write")
    p.add_argument("--stall-ms", type=float, default=0.0, help="how long a stalled answer is held back")
    p.add_argument("--latency-ms", type=float, default=0.0, help="sleep before handling object requests")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--quiet", action="store_true", help="no per-request log lines")
    args = p.parse_args(argv)

    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))

    moto_app = DomainDispatcherApplication(create_backend_app)
    moto_app.debug = True  # type: ignore[attr-defined]
    emu = Emulator(
        moto_app,
        {
            "kms_rps": args.kms_rps,
            "s3_rps": args.s3_rps,
            "fail_rate": args.fail_rate,
            "embedded_error_rate": args.embedded_error_rate,
            "drop_rate": args.drop_rate,
            "slowdown_rate": args.slowdown_rate,
            "stall_rate": args.stall_rate,
            "stall_ms": args.stall_ms,
            "drop_phase": args.drop_phase,
            "latency_ms": args.latency_ms,
        },
        args.seed,
    )
    run_simple(
        args.host,
        args.port,
        emu,
        threaded=True,
        request_handler=QuietHandler if args.quiet else MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
