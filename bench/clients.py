"""Plain object-storage clients for scripts/bench.sh (Python standard library only).

S3Client (SigV4, path-style, UNSIGNED-PAYLOAD) and SwiftClient (auth v1) with the same small
interface: create_bucket, put (bytes or a file), get (into a sink, optional range), head,
list_keys, delete_keys. One keep-alive HTTP connection per client object: use one client per
thread. Used to measure each server's ceiling, to create the API-made fixtures (the
10,000-object directory, the big object the read steps use) and to poll for "stored".
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import json
import os
import time
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

BLOCK = 1 << 20


class HTTPError(Exception):
    def __init__(self, status: int, what: str, body: bytes = b""):
        super().__init__(f"{what}: HTTP {status} {body[:300]!r}")
        self.status = status


def _encode(s: str, safe: str = "-_.~") -> str:
    return quote(s, safe=safe)


class _Conn:
    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn = None

    def get(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def reset(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def request(self, method, path, headers, body=None, body_file=None, body_size=0):
        """Sends one request and returns (response, None); the caller reads the response.
        Retries once on a connection dropped by the server between requests."""
        for attempt in (0, 1):
            c = self.get()
            try:
                c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                for k, v in headers.items():
                    c.putheader(k, v)
                if body is not None:
                    c.putheader("Content-Length", str(len(body)))
                elif body_file is not None:
                    c.putheader("Content-Length", str(body_size))
                elif method in ("PUT", "POST"):
                    c.putheader("Content-Length", "0")
                c.endheaders()
                if body:
                    c.send(body)
                elif body_file is not None:
                    with open(body_file, "rb", buffering=0) as f:
                        buf = bytearray(BLOCK)
                        view = memoryview(buf)
                        left = body_size
                        while left:
                            n = f.readinto(view[: min(left, BLOCK)])
                            if not n:
                                raise OSError("short file")
                            c.sock.sendall(view[:n])
                            left -= n
                return c.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.reset()
                if attempt or body_file is not None:
                    raise
        raise AssertionError("unreachable")


def _drain(resp, sink=None) -> int:
    """Reads the body into sink (a callable taking a memoryview) or discards it; returns bytes."""
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    total = 0
    while True:
        n = resp.readinto(view)
        if not n:
            return total
        total += n
        if sink is not None:
            sink(view[:n])


class _ObjectClient:
    """What the S3 and Swift clients share: PUT and GET of one object through `_req`."""
    PUT_OK = 200

    def put(self, key, data: bytes = b"", path=None, size=0, headers=None):
        r = self._req("PUT", key, headers=headers, body=None if path else data, body_file=path,
                      body_size=size)
        body = r.read()
        if r.status != self.PUT_OK:
            raise HTTPError(r.status, f"PUT {key}", body)
        return r.getheader("ETag")

    def get(self, key, sink=None, range_=None):
        """Returns (status, bytes received)."""
        r = self._req("GET", key, headers=_range_header(range_))
        if r.status not in (200, 206):
            raise HTTPError(r.status, f"GET {key}", r.read())
        return r.status, _drain(r, sink)


def _range_header(range_) -> dict:
    return {"Range": f"bytes={range_[0]}-{range_[1] - 1}"} if range_ else {}


class S3Client(_ObjectClient):
    def __init__(self, endpoint: str, bucket: str, access_key: str, secret_key: str,
                 region: str = "us-east-1", timeout: float = 300):
        u = urlsplit(endpoint)
        self.hostport = u.netloc
        self.c = _Conn(u.hostname, u.port or 80, timeout)
        self.bucket = bucket
        self.ak, self.sk, self.region = access_key, secret_key, region

    def close(self):
        self.c.reset()

    def _sign(self, method: str, path: str, query: list, headers: dict) -> dict:
        now = datetime.datetime.now(datetime.timezone.utc)
        amzdate = now.strftime("%Y%m%dT%H%M%SZ")
        day = amzdate[:8]
        h = {k.lower(): str(v).strip() for k, v in headers.items()}
        h["host"] = self.hostport
        h["x-amz-date"] = amzdate
        h["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
        signed = sorted(h)
        cq = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(query))
        creq = "\n".join([method, _encode(path, safe="/-_.~"), cq,
                          "".join(f"{k}:{h[k]}\n" for k in signed), ";".join(signed),
                          "UNSIGNED-PAYLOAD"])
        scope = f"{day}/{self.region}/s3/aws4_request"
        sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope, hashlib.sha256(creq.encode()).hexdigest()])
        key = ("AWS4" + self.sk).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        h["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.ak}/{scope}, "
                              f"SignedHeaders={';'.join(signed)}, Signature={sig}")
        return h

    def _req(self, method, key=None, query=(), headers=None, body=None, body_file=None, body_size=0,
             bucket=None):
        bucket = self.bucket if bucket is None else bucket
        path = "/" + bucket + ("/" + key if key is not None else "")
        query = list(query)
        h = self._sign(method, path, query, headers or {})
        url = _encode(path, safe="/-_.~")
        if query:
            url += "?" + "&".join(f"{_encode(k)}={_encode(v)}" if v != "" else _encode(k) for k, v in query)
        return self.c.request(method, url, h, body=body, body_file=body_file, body_size=body_size)

    def create_bucket(self, bucket=None):
        r = self._req("PUT", bucket=bucket)
        body = r.read()
        if r.status not in (200, 409):
            raise HTTPError(r.status, "create bucket", body)

    def get_response(self, key, range_=None):
        r = self._req("GET", key, headers=_range_header(range_))
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()

    def head(self, key):
        """Returns the headers (lower-case names) or None if missing."""
        r = self._req("HEAD", key)
        r.read()
        if r.status == 404:
            return None
        if r.status != 200:
            raise HTTPError(r.status, f"HEAD {key}")
        return {k.lower(): v for k, v in r.getheaders()}

    def copy(self, src_key, dst_key, headers=None):
        h = {"x-amz-copy-source": "/" + self.bucket + "/" + quote(src_key, safe="/")}
        h.update(headers or {})
        r = self._req("PUT", dst_key, headers=h)
        body = r.read()
        if r.status != 200 or b"<Error>" in body:
            raise HTTPError(r.status, f"COPY {src_key}", body)

    def multipart(self, key, parts: list):
        r = self._req("POST", key, query=[("uploads", "")])
        body = r.read()
        if r.status != 200:
            raise HTTPError(r.status, "initiate", body)
        uid = _xml_text(body, "UploadId")
        etags = []
        for i, data in enumerate(parts, 1):
            r = self._req("PUT", key, query=[("partNumber", str(i)), ("uploadId", uid)], body=data)
            r.read()
            if r.status != 200:
                raise HTTPError(r.status, "upload part")
            etags.append(r.getheader("ETag"))
        xml = "<CompleteMultipartUpload>" + "".join(
            f"<Part><PartNumber>{i}</PartNumber><ETag>{e}</ETag></Part>" for i, e in enumerate(etags, 1)
        ) + "</CompleteMultipartUpload>"
        r = self._req("POST", key, query=[("uploadId", uid)], body=xml.encode())
        body = r.read()
        if r.status != 200 or b"<Error>" in body:
            raise HTTPError(r.status, "complete", body)

    def list_page(self, prefix="", delimiter=None, token=None):
        q = [("list-type", "2"), ("prefix", prefix), ("max-keys", "1000")]
        if delimiter:
            q.append(("delimiter", delimiter))
        if token:
            q.append(("continuation-token", token))
        r = self._req("GET", None, query=q)
        body = r.read()
        if r.status != 200:
            raise HTTPError(r.status, "list", body)
        root = ElementTree.fromstring(body)
        items, prefixes, nxt = [], [], None
        for el in root:
            tag = el.tag.split("}")[-1]
            if tag == "Contents":
                d = {c.tag.split("}")[-1]: c.text for c in el}
                items.append((d["Key"], int(d["Size"])))
            elif tag == "CommonPrefixes":
                prefixes.append(el[0].text)
            elif tag == "NextContinuationToken":
                nxt = el.text
            elif tag == "IsTruncated" and el.text == "false":
                pass
        return items, prefixes, nxt

    def list_keys(self, prefix=""):
        """[(key, size)] of every object under prefix."""
        out, token = [], None
        while True:
            items, _, token = self.list_page(prefix, token=token)
            out += items
            if not token:
                return out

    def delete_keys(self, keys):
        keys = list(keys)
        for i in range(0, len(keys), 1000):
            batch = keys[i:i + 1000]
            xml = ("<Delete><Quiet>true</Quiet>" + "".join(
                f"<Object><Key>{_xml_escape(k)}</Key></Object>" for k in batch) + "</Delete>").encode()
            import base64
            md5 = base64.b64encode(hashlib.md5(xml).digest()).decode()
            r = self._req("POST", None, query=[("delete", "")], body=xml, headers={"Content-MD5": md5})
            body = r.read()
            if r.status != 200:
                raise HTTPError(r.status, "delete", body)


class SwiftClient(_ObjectClient):
    PUT_OK = 201

    def __init__(self, auth_url: str, user: str, key: str, container: str, timeout: float = 300):
        self.auth_url, self.user, self.key = auth_url, user, key
        self.container = container
        self.timeout = timeout
        self.token = None
        self.c = None
        self.base = None

    def close(self):
        if self.c:
            self.c.reset()

    def _auth(self):
        u = urlsplit(self.auth_url)
        c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=self.timeout)
        c.request("GET", u.path, headers={"X-Auth-User": self.user, "X-Auth-Key": self.key})
        r = c.getresponse()
        r.read()
        c.close()
        if r.status not in (200, 204):
            raise HTTPError(r.status, "swift auth")
        self.token = r.getheader("X-Auth-Token")
        s = urlsplit(r.getheader("X-Storage-Url"))
        self.c = _Conn(s.hostname, s.port or 80, self.timeout)
        self.hostport = s.netloc
        self.base = s.path

    def _req(self, method, key=None, query="", headers=None, body=None, body_file=None, body_size=0,
             container=None):
        if self.token is None:
            self._auth()
        container = self.container if container is None else container
        path = self.base + ("/" + quote(container) if container else "") + \
            ("/" + quote(key) if key is not None else "") + (("?" + query) if query else "")
        h = {"Host": self.hostport, "X-Auth-Token": self.token}
        h.update(headers or {})
        return self.c.request(method, path, h, body=body, body_file=body_file, body_size=body_size)

    def create_bucket(self, container=None):
        r = self._req("PUT", container=container)
        body = r.read()
        if r.status not in (201, 202, 204):
            raise HTTPError(r.status, "create container", body)

    def head(self, key):
        r = self._req("HEAD", key)
        r.read()
        if r.status == 404:
            return None
        if r.status not in (200, 204):
            raise HTTPError(r.status, f"HEAD {key}")
        return {k.lower(): v for k, v in r.getheaders()}

    def head_container(self, container=None):
        r = self._req("HEAD", container=container)
        r.read()
        if r.status == 404:
            return None
        return {k.lower(): v for k, v in r.getheaders()}

    def list_keys(self, prefix="", container=None):
        out, marker = [], ""
        while True:
            q = f"format=json&limit=10000&prefix={quote(prefix)}&marker={quote(marker)}"
            r = self._req("GET", query=q, container=container)
            body = r.read()
            if r.status == 404:
                return out
            if r.status not in (200, 204):
                raise HTTPError(r.status, "list", body)
            items = json.loads(body or b"[]")
            if not items:
                return out
            out += [(i["name"], int(i["bytes"])) for i in items]
            marker = items[-1]["name"]

    def delete_keys(self, keys, container=None):
        """Bulk delete (the bulk middleware), 1000 names a request."""
        container = self.container if container is None else container
        keys = list(keys)
        for i in range(0, len(keys), 1000):
            names = "\n".join(quote(f"/{container}/{k}") for k in keys[i:i + 1000]).encode()
            r = self._req("POST", container="", query="bulk-delete", body=names,
                          headers={"Content-Type": "text/plain", "Accept": "application/json"})
            body = r.read()
            if r.status != 200:
                raise HTTPError(r.status, "bulk delete", body)

    def extract_archive(self, tar_bytes: bytes, container=None):
        """Uploads a tar whose members become objects (the bulk middleware), one request."""
        container = self.container if container is None else container
        r = self._req("PUT", container=container, query="extract-archive=tar", body=tar_bytes,
                      headers={"Accept": "application/json"})
        body = r.read()
        if r.status not in (200, 201):
            raise HTTPError(r.status, "extract-archive", body)
        return json.loads(body or b"{}")


def _xml_text(body: bytes, name: str) -> str:
    for el in ElementTree.fromstring(body).iter():
        if el.tag.split("}")[-1] == name:
            return el.text
    raise ValueError(f"no {name} in reply")


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def wait_for(pred, timeout: float, interval: float = 0.05):
    """Polls pred() until true; returns the time it became true (monotonic) or None."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def file_md5(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(BLOCK), b""):
            h.update(chunk)
    return h.hexdigest()


__all__ = ["S3Client", "SwiftClient", "HTTPError", "wait_for", "file_md5", "os"]
