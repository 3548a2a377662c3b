#!/usr/bin/env python3
"""A small, fast S3 server on a local directory, for scripts/bench.sh (not a test fixture).

    python3 bench/s3server.py --root DIR --port PORT [--host 127.0.0.1]

Python standard library only. It keeps what the benchmark's clients need and nothing else:
path-style buckets; PUT (plain, `Transfer-Encoding: chunked`, and `aws-chunked` streaming
bodies), GET/HEAD with one byte range (206 + Content-Range), If-Match / If-None-Match,
user metadata (`x-amz-meta-*`) and Content-Type kept and returned, CopyObject (COPY/REPLACE
metadata), DeleteObject, DeleteObjects, ListObjects v1 and v2 (prefix, delimiter, markers,
continuation tokens, `encoding-type=url`), multipart uploads (create, part, part copy with
a range, complete, abort, list uploads, list parts), ListBuckets, Create/Delete/HeadBucket,
GetBucketLocation, object ACL (always private). Directory markers (`d/`) are ordinary keys,
so `d/` and `d/x` live side by side.

Signatures are NOT checked (any credentials work): it is a benchmark server on 127.0.0.1.
Objects are files (one per single PUT, one per part for multipart objects: completing an
upload copies nothing), never rewritten in place; copies are hard links. The index lives in
memory: the server's data is gone when it exits (the root directory is the caller's to
remove). GET bodies go out with sendfile(2).
"""

from __future__ import annotations

import argparse
import base64
import bisect
import gc
import hashlib
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
BUF = 1 << 20
REQUEST_LOG = None  # --log FILE: one line per request (for debugging a client)
REQUESTS: dict = {}  # "GET bucket" (listings), "HEAD object"...: how many; GET /-/requests says
MAX_KEYS = 1000


@dataclass
class Obj:
    segments: list  # [(path, size)]
    size: int
    etag: str  # without quotes
    mtime: float
    ctype: str
    meta: dict  # lower-case header name -> value (x-amz-meta-*, content-encoding, ...)


@dataclass
class Bucket:
    created: float
    keys: list = field(default_factory=list)  # sorted
    objects: dict = field(default_factory=dict)


@dataclass
class Upload:
    bucket: str
    key: str
    ctype: str
    meta: dict
    initiated: float
    parts: dict = field(default_factory=dict)  # number -> (path, size, md5 hex)


class Store:
    def __init__(self, root: str):
        self.root = root
        self.data = os.path.join(root, "data")
        os.makedirs(self.data, exist_ok=True)
        self.lock = threading.Lock()
        self.buckets: dict[str, Bucket] = {}
        self.uploads: dict[str, Upload] = {}

    def new_path(self) -> str:
        return os.path.join(self.data, uuid.uuid4().hex)

    def put(self, bucket: str, key: str, obj: Obj) -> list:
        """Stores obj under key; returns the segment files no longer referenced."""
        b = self.buckets[bucket]
        old = b.objects.get(key)
        if old is None:
            bisect.insort(b.keys, key)
        b.objects[key] = obj
        return old.segments if old else []

    def delete(self, bucket: str, key: str) -> list:
        b = self.buckets[bucket]
        old = b.objects.pop(key, None)
        if old is None:
            return []
        i = bisect.bisect_left(b.keys, key)
        if i < len(b.keys) and b.keys[i] == key:
            del b.keys[i]
        return old.segments


SHARED_PATHS: set = set()  # data files that --fill objects share: never unlinked


def unlink_all(segments) -> None:
    for path, _ in segments:
        if path in SHARED_PATHS:
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def http_date(t: float) -> str:
    return formatdate(t, usegmt=True)


def iso_date(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


def successor(prefix: str) -> str:
    """The smallest string greater than every string starting with prefix."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str = "", resource: str = ""):
        super().__init__(code)
        self.status, self.code, self.message, self.resource = status, code, message, resource


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "objmount-bench-s3"
    sys_version = ""
    store: Store  # set on the class by main()

    # --- plumbing ---------------------------------------------------------------------------

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def parse(self):
        parts = urlsplit(self.path)
        self.query = parse_qs(parts.query, keep_blank_values=True)
        path = unquote(parts.path)
        if path.startswith("/"):
            path = path[1:]
        bucket, _, key = path.partition("/")
        self.bucket, self.key = bucket, key
        self.body_read = False

    def q(self, name: str, default=None):
        v = self.query.get(name)
        return v[0] if v else default

    def reply(self, status: int, body: bytes = b"", headers=(), ctype="application/xml"):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if body or status not in (204, 304):
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if body and self.command != "HEAD":
            self._headers_buffer.append(b"\r\n" + body)  # one write: headers and body
            self.flush_headers()
        else:
            self.end_headers()

    def xml(self, status: int, text: str, headers=()):
        self.reply(status, (XML_HEAD + text).encode(), headers)

    def error(self, e: S3Error):
        if not self.body_read and self.command in ("PUT", "POST"):
            self.close_connection = True  # the body was not consumed
        body = "" if self.command == "HEAD" else (
            f"<Error><Code>{e.code}</Code><Message>{escape(e.message or e.code)}</Message>"
            f"<Resource>{escape(e.resource)}</Resource><RequestId>0</RequestId></Error>")
        self.xml(e.status, body)

    def dispatch(self, method):
        try:
            if self.path == "/-/requests":  # not a bucket name (3 characters at least)
                return self.reply(200, json.dumps(REQUESTS).encode(), ctype="application/json")
            self.parse()
            kind = f"{self.command} {'object' if self.key else 'bucket' if self.bucket else 'service'}"
            REQUESTS[kind] = REQUESTS.get(kind, 0) + 1
            method()
            if REQUEST_LOG is not None:
                REQUEST_LOG.write(f"{time.time():.3f} {self.command} {self.path} "
                                  f"range={self.headers.get('Range')}\n")
        except S3Error as e:
            self.error(e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a bug: answer 500 and keep serving
            sys.stderr.write(f"s3server: {self.command} {self.path}: {e!r}\n")
            self.close_connection = True
            try:
                self.error(S3Error(500, "InternalError", repr(e)))
            except OSError:
                pass

    def do_GET(self):
        self.dispatch(self.get)

    def do_HEAD(self):
        self.dispatch(self.get)

    def do_PUT(self):
        self.dispatch(self.put)

    def do_POST(self):
        self.dispatch(self.post)

    def do_DELETE(self):
        self.dispatch(self.delete)

    def bucket_obj(self) -> Bucket:
        b = self.store.buckets.get(self.bucket)
        if b is None:
            raise S3Error(404, "NoSuchBucket", "The specified bucket does not exist", self.bucket)
        return b

    # --- request bodies ---------------------------------------------------------------------

    def body_chunks(self):
        """Yields the request body as memoryviews of one reused buffer."""
        self.body_read = True
        buf = bytearray(BUF)
        view = memoryview(buf)
        rfile = self.rfile
        enc = (self.headers.get("Content-Encoding") or "").lower()
        sha = self.headers.get("x-amz-content-sha256") or ""
        if "aws-chunked" in enc or sha.startswith("STREAMING-"):
            yield from self.aws_chunks(view)
            return
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            while True:
                line = rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                yield from self.read_exactly(size, view)
                rfile.readline(8)
        yield from self.read_exactly(int(self.headers.get("Content-Length") or 0), view)

    def read_exactly(self, size: int, view):
        """Yields the next `size` bytes of the request, through `view`."""
        while size:
            n = self.rfile.readinto(view[: min(size, BUF)])
            if not n:
                raise S3Error(400, "IncompleteBody")
            size -= n
            yield view[:n]

    def aws_chunks(self, view):
        """aws-chunked (SigV4 streaming, signed or unsigned, with or without trailers)."""
        rfile = self.rfile
        left = int(self.headers.get("Content-Length") or 0)

        def line():
            nonlocal left
            s = rfile.readline(4096)
            left -= len(s)
            return s

        while True:
            header = line()
            if not header:
                raise S3Error(400, "IncompleteBody")
            size = int(header.split(b";")[0].strip(), 16)
            if size == 0:
                break
            yield from self.read_exactly(size, view)
            left -= size
            line()  # CRLF after the chunk
        while left > 0:  # trailers, then the final CRLF
            if not line():
                break

    def body_bytes(self, limit=64 << 20) -> bytes:
        out = bytearray()
        for chunk in self.body_chunks():
            out += chunk
            if len(out) > limit:
                raise S3Error(400, "EntityTooLarge")
        return bytes(out)

    def receive_file(self):
        """Stores the body in a new file; returns (path, size, md5 hex).

        Bodies above one buffer are received, hashed and written by three threads at once
        (each releases the GIL), which nearly doubles the PUT rate on a 2-core machine."""
        path = self.store.new_path()
        md5 = hashlib.md5()
        size = 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

        def write_all(chunk):
            off, n = 0, len(chunk)
            while off < n:
                off += os.write(fd, chunk[off:])

        try:
            length = int(self.headers.get("Content-Length") or 0)
            plain = not ((self.headers.get("Content-Encoding") or "").lower().count("aws-chunked")
                         or (self.headers.get("x-amz-content-sha256") or "").startswith("STREAMING-")
                         or (self.headers.get("Transfer-Encoding") or "").lower() == "chunked")
            if plain and length > BUF:
                size = self.receive_pipelined(length, md5, write_all)
            else:
                for chunk in self.body_chunks():
                    md5.update(chunk)
                    write_all(chunk)
                    size += len(chunk)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)
        return path, size, md5.hexdigest()

    def receive_pipelined(self, length, md5, write_all) -> int:
        import queue
        self.body_read = True
        nbuf = 4
        bufs = [bytearray(BUF) for _ in range(nbuf)]
        free = queue.Queue()
        for i in range(nbuf):
            free.put(i)
        pending = [0] * nbuf
        lock = threading.Lock()
        hq, wq = queue.Queue(), queue.Queue()
        errors = []

        def done(i):
            with lock:
                pending[i] -= 1
                if pending[i] == 0:
                    free.put(i)

        def worker(q, fn):
            while True:
                item = q.get()
                if item is None:
                    return
                i, n = item
                try:
                    if not errors:
                        fn(memoryview(bufs[i])[:n])
                except BaseException as e:
                    errors.append(e)
                done(i)

        threads = [threading.Thread(target=worker, args=(hq, md5.update), daemon=True),
                   threading.Thread(target=worker, args=(wq, write_all), daemon=True)]
        for t in threads:
            t.start()
        left = length
        try:
            while left and not errors:
                i = free.get()
                view = memoryview(bufs[i])
                n = 0
                want = min(left, BUF)
                while n < want:
                    got = self.rfile.readinto(view[n:want])
                    if not got:
                        raise S3Error(400, "IncompleteBody")
                    n += got
                left -= n
                with lock:
                    pending[i] = 2
                hq.put((i, n))
                wq.put((i, n))
        finally:
            hq.put(None)
            wq.put(None)
            for t in threads:
                t.join()
        if errors:
            raise errors[0]
        return length

    def new_meta(self):
        meta = {}
        for k, v in self.headers.items():
            lk = k.lower()
            if lk.startswith("x-amz-meta-") or lk in ("cache-control", "content-disposition",
                                                      "content-language", "expires"):
                meta[lk] = v
            elif lk == "content-encoding":
                rest = ",".join(p for p in v.split(",") if p.strip().lower() != "aws-chunked")
                if rest.strip():
                    meta[lk] = rest.strip()
        ctype = self.headers.get("Content-Type") or "binary/octet-stream"
        return ctype, meta

    # --- GET / HEAD -------------------------------------------------------------------------

    def get(self):
        if not self.bucket:
            return self.list_buckets()
        if not self.key:
            b = self.bucket_obj()
            if "location" in self.query:
                return self.xml(200, f'<LocationConstraint xmlns="{NS}"></LocationConstraint>')
            if "uploads" in self.query:
                return self.list_uploads()
            if "versioning" in self.query:
                return self.xml(200, f'<VersioningConfiguration xmlns="{NS}"/>')
            if "acl" in self.query:
                return self.acl()
            for unsupported in ("policy", "lifecycle", "cors", "tagging", "object-lock",
                                "encryption", "website", "replication"):
                if unsupported in self.query:
                    raise S3Error(404, "NoSuch" + unsupported.title().replace("-", ""))
            if self.command == "HEAD":
                return self.reply(200, headers=[("x-amz-bucket-region", "us-east-1")])
            return self.list_objects(b)
        b = self.bucket_obj()
        if "acl" in self.query:
            with self.store.lock:
                if self.key not in b.objects:
                    raise S3Error(404, "NoSuchKey", "The specified key does not exist.", self.key)
            return self.acl()
        if "uploadId" in self.query:
            return self.list_parts()
        if "tagging" in self.query:
            return self.xml(200, f'<Tagging xmlns="{NS}"><TagSet/></Tagging>')
        with self.store.lock:
            obj = b.objects.get(self.key)
            if obj is None:
                raise S3Error(404, "NoSuchKey", "The specified key does not exist.", self.key)
            files = []
            try:
                for path, size in obj.segments:
                    files.append((os.open(path, os.O_RDONLY), size))
            except OSError:
                for fd, _ in files:
                    os.close(fd)
                raise
        try:
            self.send_object(obj, files)
        finally:
            for fd, _ in files:
                os.close(fd)

    def send_object(self, obj: Obj, files):
        etag = '"' + obj.etag + '"'
        im = self.headers.get("If-Match")
        if im and im.strip() != "*" and obj.etag not in [t.strip().strip('"') for t in im.split(",")]:
            raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
        inm = self.headers.get("If-None-Match")
        if inm and (inm.strip() == "*" or obj.etag in [t.strip().strip('"') for t in inm.split(",")]):
            return self.reply(304, headers=[("ETag", etag), ("Last-Modified", http_date(obj.mtime))])
        headers = [("ETag", etag), ("Last-Modified", http_date(obj.mtime)), ("Accept-Ranges", "bytes"),
                   ("Content-Type", obj.ctype)]
        headers += list(obj.meta.items())
        if self.q("partNumber"):  # GET ?partNumber=1 of a simple object: the whole object
            headers.append(("x-amz-mp-parts-count", str(len(obj.segments))))
        start, end, status = 0, obj.size, 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and "," not in rng:
            first, _, last = rng[6:].strip().partition("-")
            try:
                if first == "":
                    n = int(last)
                    start, end = max(0, obj.size - n), obj.size
                else:
                    start = int(first)
                    end = obj.size if last == "" else min(int(last) + 1, obj.size)
            except ValueError:
                start, end = 0, obj.size
            else:
                if start >= obj.size or (first == "" and int(last) == 0):
                    raise S3Error(416, "InvalidRange", "The requested range is not satisfiable")
                status = 206
                headers.append(("Content-Range", f"bytes {start}-{end - 1}/{obj.size}"))
        length = end - start
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD" or length == 0:
            return
        sock = self.connection
        pos = 0
        for fd, size in files:
            seg_start, seg_end = pos, pos + size
            pos = seg_end
            a, z = max(start, seg_start), min(end, seg_end)
            if a >= z:
                continue
            off, count = a - seg_start, z - a
            while count:
                sent = os.sendfile(sock.fileno(), fd, off, count)
                if sent == 0:
                    raise BrokenPipeError
                off += sent
                count -= sent

    def list_buckets(self):
        with self.store.lock:
            items = sorted(self.store.buckets.items())
        body = "".join(f"<Bucket><Name>{escape(n)}</Name><CreationDate>{iso_date(b.created)}"
                       f"</CreationDate></Bucket>" for n, b in items)
        self.xml(200, f'<ListAllMyBucketsResult xmlns="{NS}"><Owner><ID>bench</ID>'
                      f"<DisplayName>bench</DisplayName></Owner><Buckets>{body}</Buckets>"
                      "</ListAllMyBucketsResult>")

    def acl(self):
        self.xml(200, f'<AccessControlPolicy xmlns="{NS}"><Owner><ID>bench</ID><DisplayName>bench'
                      '</DisplayName></Owner><AccessControlList><Grant><Grantee '
                      'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser">'
                      '<ID>bench</ID><DisplayName>bench</DisplayName></Grantee>'
                      "<Permission>FULL_CONTROL</Permission></Grant></AccessControlList>"
                      "</AccessControlPolicy>")

    def list_objects(self, b: Bucket):
        v2 = self.q("list-type") == "2"
        prefix = self.q("prefix", "")
        delim = self.q("delimiter", "")
        url = self.q("encoding-type") == "url"
        try:
            max_keys = min(int(self.q("max-keys", MAX_KEYS)), MAX_KEYS)
        except ValueError:
            raise S3Error(400, "InvalidArgument", "max-keys")
        enc = (lambda s: escape(quote(s, safe="/~"))) if url else escape
        if v2:
            token = self.q("continuation-token")
            start_after = self.q("start-after", "")
            marker = start_after
            if token:
                try:
                    marker = base64.urlsafe_b64decode(token.encode()).decode()
                except Exception:
                    raise S3Error(400, "InvalidArgument", "The continuation token provided is incorrect")
        else:
            marker = self.q("marker", "")
        contents, prefixes = [], []
        truncated = False
        last = None
        with self.store.lock:
            keys, objects = b.keys, b.objects
            i = bisect.bisect_left(keys, prefix)
            if marker and marker >= prefix:
                i = bisect.bisect_right(keys, marker)
                if delim and marker.endswith(delim) and marker.startswith(prefix) \
                        and delim in marker[len(prefix):]:
                    i = bisect.bisect_left(keys, successor(marker))
            n = len(keys)
            while i < n:
                k = keys[i]
                if not k.startswith(prefix):
                    break
                if len(contents) + len(prefixes) >= max_keys:
                    truncated = True
                    break
                if delim:
                    j = k.find(delim, len(prefix))
                    if j >= 0:
                        cp = k[: j + len(delim)]
                        prefixes.append(cp)
                        last = cp
                        i = bisect.bisect_left(keys, successor(cp), i)
                        continue
                o = objects[k]
                contents.append((k, o.mtime, o.etag, o.size))
                last = k
                i += 1
        out = [f'<ListBucketResult xmlns="{NS}"><Name>{escape(self.bucket)}</Name>'
               f"<Prefix>{enc(prefix)}</Prefix><MaxKeys>{max_keys}</MaxKeys>"]
        if delim:
            out.append(f"<Delimiter>{enc(delim)}</Delimiter>")
        if url:
            out.append("<EncodingType>url</EncodingType>")
        out.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
        if v2:
            out.append(f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount>")
            if self.q("continuation-token"):
                out.append(f"<ContinuationToken>{escape(self.q('continuation-token'))}</ContinuationToken>")
            if self.q("start-after"):
                out.append(f"<StartAfter>{enc(self.q('start-after'))}</StartAfter>")
            if truncated and last is not None:
                tok = base64.urlsafe_b64encode(last.encode()).decode()
                out.append(f"<NextContinuationToken>{tok}</NextContinuationToken>")
        else:
            out.append(f"<Marker>{enc(marker)}</Marker>")
            if truncated and last is not None and delim:
                out.append(f"<NextMarker>{enc(last)}</NextMarker>")
        for k, mtime, etag, size in contents:
            out.append(f"<Contents><Key>{enc(k)}</Key><LastModified>{iso_date(mtime)}</LastModified>"
                       f"<ETag>&quot;{etag}&quot;</ETag><Size>{size}</Size>"
                       "<Owner><ID>bench</ID><DisplayName>bench</DisplayName></Owner>"
                       "<StorageClass>STANDARD</StorageClass></Contents>")
        for p in prefixes:
            out.append(f"<CommonPrefixes><Prefix>{enc(p)}</Prefix></CommonPrefixes>")
        out.append("</ListBucketResult>")
        self.xml(200, "".join(out))

    def list_uploads(self):
        prefix = self.q("prefix", "")
        url = self.q("encoding-type") == "url"
        enc = (lambda s: escape(quote(s, safe="/~"))) if url else escape
        with self.store.lock:
            ups = sorted((u.key, uid, u.initiated) for uid, u in self.store.uploads.items()
                         if u.bucket == self.bucket and u.key.startswith(prefix))
        body = "".join(f"<Upload><Key>{enc(k)}</Key><UploadId>{uid}</UploadId>"
                       f"<Initiated>{iso_date(t)}</Initiated><StorageClass>STANDARD</StorageClass>"
                       "</Upload>" for k, uid, t in ups)
        self.xml(200, f'<ListMultipartUploadsResult xmlns="{NS}"><Bucket>{escape(self.bucket)}</Bucket>'
                      f"<Prefix>{enc(prefix)}</Prefix><MaxUploads>1000</MaxUploads>"
                      f"{'<EncodingType>url</EncodingType>' if url else ''}"
                      f"<IsTruncated>false</IsTruncated>{body}</ListMultipartUploadsResult>")

    def upload(self) -> Upload:
        u = self.store.uploads.get(self.q("uploadId"))
        if u is None or u.bucket != self.bucket or u.key != self.key:
            raise S3Error(404, "NoSuchUpload", "The specified upload does not exist")
        return u

    def list_parts(self):
        with self.store.lock:
            u = self.upload()
            parts = sorted(u.parts.items())
        body = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>&quot;{md5}&quot;</ETag>"
                       f"<Size>{size}</Size></Part>" for n, (_, size, md5) in parts)
        self.xml(200, f'<ListPartsResult xmlns="{NS}"><Bucket>{escape(self.bucket)}</Bucket>'
                      f"<Key>{escape(self.key)}</Key><UploadId>{self.q('uploadId')}</UploadId>"
                      f"<IsTruncated>false</IsTruncated>{body}</ListPartsResult>")

    # --- PUT ----------------------------------------------------------------------------------

    def put(self):
        if not self.key:
            for sub in ("acl", "versioning", "tagging", "policy", "cors", "lifecycle"):
                if sub in self.query:
                    self.body_bytes()
                    return self.reply(200)
            self.body_bytes()
            with self.store.lock:
                if self.bucket in self.store.buckets:
                    raise S3Error(409, "BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded")
                self.store.buckets[self.bucket] = Bucket(created=time.time())
            return self.reply(200, headers=[("Location", "/" + self.bucket)])
        b = self.bucket_obj()
        if "acl" in self.query or "tagging" in self.query:
            self.body_bytes()
            return self.reply(200)
        if "partNumber" in self.query and "uploadId" in self.query:
            return self.put_part()
        source = self.headers.get("x-amz-copy-source")
        if source:
            return self.copy_object(b, source)
        path, size, md5 = self.receive_file()
        ctype, meta = self.new_meta()
        obj = Obj(segments=[(path, size)], size=size, etag=md5, mtime=time.time(), ctype=ctype, meta=meta)
        try:
            with self.store.lock:
                self.check_put_conditions(b)
                old = self.store.put(self.bucket, self.key, obj)
        except S3Error:
            unlink_all(obj.segments)
            raise
        unlink_all(old)
        self.reply(200, headers=[("ETag", f'"{md5}"')])

    def check_put_conditions(self, b: Bucket):
        cur = b.objects.get(self.key)
        inm = self.headers.get("If-None-Match")
        if inm and inm.strip() == "*" and cur is not None:
            raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
        im = self.headers.get("If-Match")
        if im and (cur is None or (im.strip() != "*" and cur.etag != im.strip().strip('"'))):
            raise S3Error(412 if cur is not None else 404,
                          "PreconditionFailed" if cur is not None else "NoSuchKey")

    def source(self, source: str):
        src = unquote(source.split("?", 1)[0])
        if src.startswith("/"):
            src = src[1:]
        sb, _, sk = src.partition("/")
        bucket = self.store.buckets.get(sb)
        if bucket is None:
            raise S3Error(404, "NoSuchBucket", "The specified bucket does not exist", sb)
        obj = bucket.objects.get(sk)
        if obj is None:
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.", sk)
        return obj

    def link_segments(self, segments):
        out = []
        try:
            for path, size in segments:
                new = self.store.new_path()
                os.link(path, new)
                out.append((new, size))
        except OSError:
            unlink_all(out)
            raise
        return out

    def copy_object(self, b: Bucket, source: str):
        self.body_bytes()
        directive = (self.headers.get("x-amz-metadata-directive") or "COPY").upper()
        with self.store.lock:
            src = self.source(source)
            segments = self.link_segments(src.segments)
            if directive == "REPLACE":
                ctype, meta = self.new_meta()
            else:
                ctype, meta = src.ctype, dict(src.meta)
            obj = Obj(segments=segments, size=src.size, etag=src.etag, mtime=time.time(), ctype=ctype, meta=meta)
            try:
                self.check_put_conditions(b)
            except S3Error:
                unlink_all(segments)
                raise
            old = self.store.put(self.bucket, self.key, obj)
        unlink_all(old)
        self.xml(200, f'<CopyObjectResult xmlns="{NS}"><LastModified>{iso_date(obj.mtime)}</LastModified>'
                      f"<ETag>&quot;{obj.etag}&quot;</ETag></CopyObjectResult>")

    def put_part(self):
        try:
            number = int(self.q("partNumber"))
        except ValueError:
            raise S3Error(400, "InvalidArgument", "partNumber")
        with self.store.lock:
            self.upload()
        source = self.headers.get("x-amz-copy-source")
        if source:
            self.body_bytes()
            with self.store.lock:
                src = self.source(source)
                files = [(os.open(p, os.O_RDONLY), s) for p, s in src.segments]
            try:
                start, end = 0, src.size
                rng = self.headers.get("x-amz-copy-source-range")
                if rng:
                    a, _, z = rng.strip()[6:].partition("-")
                    start, end = int(a), int(z) + 1
                    if start >= src.size or end > src.size:
                        raise S3Error(416, "InvalidRange", "The requested range is not satisfiable")
                path = self.store.new_path()
                md5 = hashlib.md5()
                with open(path, "wb") as out:
                    pos = 0
                    for fd, size in files:
                        a, z = max(start, pos), min(end, pos + size)
                        off = a - pos
                        pos += size
                        while a < z:
                            chunk = os.pread(fd, min(BUF, z - a), off)
                            if not chunk:
                                raise S3Error(500, "InternalError", "short read")
                            md5.update(chunk)
                            out.write(chunk)
                            a += len(chunk)
                            off += len(chunk)
                size, digest = end - start, md5.hexdigest()
            finally:
                for fd, _ in files:
                    os.close(fd)
        else:
            path, size, digest = self.receive_file()
        with self.store.lock:
            try:
                u = self.upload()
            except S3Error:
                os.unlink(path)
                raise
            old = u.parts.get(number)
            u.parts[number] = (path, size, digest)
        if old:
            unlink_all([old[:2]])
        if source:
            self.xml(200, f'<CopyPartResult xmlns="{NS}"><LastModified>{iso_date(time.time())}</LastModified>'
                          f"<ETag>&quot;{digest}&quot;</ETag></CopyPartResult>")
        else:
            self.reply(200, headers=[("ETag", f'"{digest}"')])

    # --- POST ---------------------------------------------------------------------------------

    def post(self):
        b = self.bucket_obj()
        if not self.key and "delete" in self.query:
            return self.delete_objects(b)
        if "uploads" in self.query:
            self.body_bytes()
            ctype, meta = self.new_meta()
            uid = uuid.uuid4().hex
            with self.store.lock:
                self.store.uploads[uid] = Upload(self.bucket, self.key, ctype, meta, time.time())
            return self.xml(200, f'<InitiateMultipartUploadResult xmlns="{NS}"><Bucket>{escape(self.bucket)}'
                                 f"</Bucket><Key>{escape(self.key)}</Key><UploadId>{uid}</UploadId>"
                                 "</InitiateMultipartUploadResult>")
        if "uploadId" in self.query:
            return self.complete(b)
        raise S3Error(400, "InvalidRequest", "unsupported POST")

    def complete(self, b: Bucket):
        body = self.body_bytes()
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            raise S3Error(400, "MalformedXML")
        wanted = []
        for part in root.iter():
            if part.tag.split("}")[-1] != "Part":
                continue
            num = etag = None
            for child in part:
                tag = child.tag.split("}")[-1]
                if tag == "PartNumber":
                    num = int(child.text)
                elif tag == "ETag":
                    etag = (child.text or "").strip().strip('"')
            wanted.append((num, etag))
        with self.store.lock:
            u = self.upload()
            segments, digests = [], b""
            last = 0
            for num, etag in wanted:
                p = u.parts.get(num)
                if p is None or (etag and etag != p[2]) or num <= last:
                    raise S3Error(400, "InvalidPart" if p is None or num > last else "InvalidPartOrder",
                                  "One or more of the specified parts could not be found")
                last = num
                segments.append((p[0], p[1]))
                digests += bytes.fromhex(p[2])
            if not segments:
                raise S3Error(400, "MalformedXML", "no parts")
            etag = hashlib.md5(digests).hexdigest() + f"-{len(segments)}"
            obj = Obj(segments=segments, size=sum(s for _, s in segments), etag=etag, mtime=time.time(),
                      ctype=u.ctype, meta=u.meta)
            self.check_put_conditions(b)
            used = {p for p, _ in segments}
            unused = [(p, s) for p, s, _ in u.parts.values() if p not in used]
            del self.store.uploads[self.q("uploadId")]
            old = self.store.put(self.bucket, self.key, obj)
        unlink_all(old + unused)
        self.xml(200, f'<CompleteMultipartUploadResult xmlns="{NS}"><Location>/{escape(self.bucket)}/'
                      f"{escape(self.key)}</Location><Bucket>{escape(self.bucket)}</Bucket>"
                      f"<Key>{escape(self.key)}</Key><ETag>&quot;{etag}&quot;</ETag>"
                      "</CompleteMultipartUploadResult>")

    def delete_objects(self, b: Bucket):
        body = self.body_bytes()
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            raise S3Error(400, "MalformedXML")
        quiet = False
        keys = []
        for el in root.iter():
            tag = el.tag.split("}")[-1]
            if tag == "Quiet":
                quiet = (el.text or "").strip().lower() == "true"
            elif tag == "Key":
                keys.append(el.text or "")
        dead = []
        with self.store.lock:
            for k in keys:
                dead += self.store.delete(self.bucket, k)
        unlink_all(dead)
        done = "" if quiet else "".join(f"<Deleted><Key>{escape(k)}</Key></Deleted>" for k in keys)
        self.xml(200, f'<DeleteResult xmlns="{NS}">{done}</DeleteResult>')

    # --- DELETE -------------------------------------------------------------------------------

    def delete(self):
        if not self.key:
            with self.store.lock:
                b = self.bucket_obj()
                if b.keys:
                    raise S3Error(409, "BucketNotEmpty", "The bucket you tried to delete is not empty")
                del self.store.buckets[self.bucket]
            return self.reply(204)
        b = self.bucket_obj()
        if "uploadId" in self.query:
            with self.store.lock:
                u = self.upload()
                del self.store.uploads[self.q("uploadId")]
            unlink_all([(p, s) for p, s, _ in u.parts.values()])
            return self.reply(204)
        with self.store.lock:
            dead = self.store.delete(self.bucket, self.key)
        unlink_all(dead)
        self.reply(204)


def fill(store: Store, spec: str) -> None:
    """--fill BUCKET/PREFIX:COUNT:PER_DIR: many objects at once, without a request each."""
    where, count, per_dir = spec.rsplit(":", 2)
    bucket, _, prefix = where.partition("/")
    count, per_dir = int(count), int(per_dir)
    body = b"x" * 100
    path = store.new_path()
    with open(path, "wb") as f:
        f.write(body)
    SHARED_PATHS.add(path)
    etag = hashlib.md5(body).hexdigest()
    b = store.buckets.setdefault(bucket, Bucket(created=time.time()))
    now = time.time()
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    for i in range(count):
        key = f"{prefix}f{i:09d}" if per_dir >= count else f"{prefix}d{i // per_dir:05d}/f{i:09d}"
        b.objects[key] = Obj(segments=[(path, len(body))], size=len(body), etag=etag, mtime=now,
                             ctype="application/octet-stream", meta={})
    b.keys = sorted(b.objects)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def server_bind(self):
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        super().server_bind()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bucket", action="append", default=[], help="create this bucket at start")
    ap.add_argument("--log", help="append one line per request to this file")
    ap.add_argument("--fill", action="append", default=[], metavar="BUCKET/PREFIX:COUNT:PER_DIR",
                    help="create COUNT 100-byte objects at start, in directories of PER_DIR: "
                         "PREFIX/dNNNNN/fNNNNNNNNN, or PREFIX/fNNNNNNNNN when PER_DIR >= COUNT "
                         "(for scale tests; they share one data file)")
    a = ap.parse_args(argv)
    if a.log:
        global REQUEST_LOG
        REQUEST_LOG = open(a.log, "a", buffering=1)
    store = Store(a.root)
    for name in a.bucket:
        store.buckets[name] = Bucket(created=time.time())
    # --fill makes millions of long-lived containers (an Obj and its segment list per object:
    # 2,000,000 at 1,000,000 objects) that never form cycles. Python's cyclic GC walks all of
    # them at each full collection: 14 during a fill of 1,000,000 (1.2-1.4 s of its 4 s of CPU),
    # and the first collections after it walk the new sorted key list (~25 ms each). Fill with
    # the collector off, then move everything to the permanent generation (gc.freeze), which
    # collections skip: the fill takes 2.4 s of CPU. No full collection runs while a walk HEADs
    # and lists (requests free what they allocate), so the time per request is the same either way.
    gc.disable()
    for spec in a.fill:
        fill(store, spec)
    gc.freeze()
    gc.enable()
    Handler.store = store
    httpd = Server((a.host, a.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown, daemon=True).start())
    print(f"listening {a.host}:{httpd.server_address[1]}", flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
