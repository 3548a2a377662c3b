#!/usr/bin/env python3
"""Generates the KSS V2 vectors pasted into KSSV2Tests.swift (`ks3sdkVectors`, `ks3sdkPresignVectors`).

Oracle: the official Kingsoft SDK, pip package ks3sdk 1.18.0, its own functions only:
  - header auth:  ks3.auth.canonical_string(method, bucket, key, query_args, headers)
                  ks3.auth.encode(secret, string_to_sign)           (what add_auth_header does)
  - request path: ks3.connection.PathCallingFormat().build_path_base(bucket, key)
  - presigned:    ks3.connection.Connection(...).generate_url(expires, method, bucket, key,
                  params=..., expires_in_absolute=True)              (no network I/O)
Run:  python3 -m venv /tmp/ks3-venv && /tmp/ks3-venv/bin/pip install ks3sdk==1.18.0
      /tmp/ks3-venv/bin/python Tests/S3SigningTests/generate_kss_vectors.py
and paste the printed Swift literals. Query arguments are passed as a dict of raw (decoded)
values, which is how the SDK's bucket/key methods call make_request.

With `--json --random N [--seed S]` it prints instead, as JSON, N header-auth cases drawn at
random (non-ASCII and reserved characters in keys, doubled slashes, signed and unsigned
sub-resources, x-kss-* headers with odd spacing), each signed by the SDK: KSSV2Tests's live test
runs this at test time (OBJMOUNT_TEST_VENV_PYTHON, a python with ks3sdk) and compares.
"""
import json
import random
import sys
from ks3 import auth
from ks3.connection import Connection, PathCallingFormat

AK = "AKLTEXAMPLEAKID"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
D = "Tue, 01 Jul 2025 12:00:00 GMT"

# (name, method, bucket, key, query dict (None = bare key), headers as ordered list of pairs)
HEADER_CASES = [
    ("key-with-spaces-and-reserved", "GET", "mybucket", "a b+c*d'e!f(g)=h&i.txt", {}, [("Date", D)]),
    ("non-ascii-japanese", "PUT", "mybucket", "日本語/ファイル 1.txt",
     {}, [("Date", D), ("Content-Type", "text/plain; charset=utf-8")]),
    ("non-ascii-emoji-and-tilde", "GET", "mybucket", "~user/😀 smile#1?.png", {}, [("Date", D)]),
    ("object-acl", "PUT", "mybucket", "docs/report.pdf", {"acl": None},
     [("Date", D), ("X-Kss-Acl", "public-read")]),
    ("initiate-multipart-with-meta", "POST", "mybucket", "videos/big movie.mp4", {"uploads": None},
     [("Date", D), ("Content-Type", "video/mp4"), ("x-kss-meta-mtime", "1751371200"),
      ("X-KSS-Meta-Mode", "33188"), ("x-kss-storage-class", "STANDARD_IA")]),
    ("upload-part", "PUT", "mybucket", "videos/big movie.mp4", {"partNumber": "1", "uploadId": "x"},
     [("Date", D), ("Content-MD5", "XrY7u+Ae7tCTyyK7j1rNww==")]),
    ("response-overrides-and-version", "GET", "mybucket", "a.txt",
     {"response-content-type": "text/plain; charset=utf-8",
      "response-content-disposition": 'attachment; filename="a b.txt"', "versionId": "v1"},
     [("Date", D)]),
    ("list-v2-unsigned-params", "GET", "mybucket", "",
     {"list-type": "2", "prefix": "dossier/é", "delimiter": "/", "continuation-token": "tok/+=",
      "encoding-type": "url", "max-keys": "1000"}, [("Date", D)]),
    ("multi-delete", "POST", "mybucket", "", {"delete": None},
     [("Date", D), ("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="), ("Content-Type", "application/xml")]),
    ("abort-multipart", "DELETE", "mybucket", "videos/big movie.mp4", {"uploadId": "abc/def"}, [("Date", D)]),
    ("service-list-buckets", "GET", "", "", {}, [("Date", D)]),
    ("double-slash-key", "PUT", "mybucket", "a//b///c", {}, [("Date", D)]),
    ("kss-header-value-not-trimmed-empty-content-type", "PUT", "mybucket", "m.txt", {},
     [("Date", D), ("Content-Type", ""), ("x-kss-meta-note", "  two  spaces "),
      ("x-kss-meta-empty", "")]),
    ("directory-marker-with-meta", "PUT", "mybucket", "dir/", {},
     [("Date", D), ("Content-Type", "application/x-directory"), ("x-kss-meta-mtime", "1751371200.5")]),
]

# (name, method, bucket, key, params dict, expires epoch)
PRESIGN_CASES = [
    ("presign-non-ascii-key", "GET", "mybucket", "photos/été 2025/猫.jpg", None, 1751371200),
    ("presign-response-content-type", "GET", "mybucket", "report.pdf",
     {"response-content-type": "application/pdf"}, 1751374800),
    ("presign-put", "PUT", "mybucket", "upload/new file.bin", None, 1751371260),
]


def swift(s):
    return json.dumps(s, ensure_ascii=False)


def main():
    print("// header-auth vectors")
    for name, method, bucket, key, query, headers in HEADER_CASES:
        hdict = dict(headers)
        sts = auth.canonical_string(method, bucket, key, query or None, hdict)
        sig = auth.encode(SK, sts)
        path = PathCallingFormat().build_path_base(bucket, key)
        q = ", ".join("(%s, %s)" % (swift(k), "nil" if v is None else swift(v)) for k, v in query.items())
        h = ", ".join("(%s, %s)" % (swift(k), swift(v)) for k, v in headers)
        print("    KSSVector(%s, %s, bucket: %s, key: %s,\n"
              "              query: [%s],\n"
              "              headers: [%s],\n"
              "              path: %s,\n"
              "              stringToSign: %s,\n"
              "              signature: %s)," % (
                  swift(name), swift(method), swift(bucket), swift(key), q, h, swift(path), swift(sts), swift(sig)))
    print("// presign vectors")
    conn = Connection(AK, SK, host="ks3-cn-beijing.ksyuncs.com", calling_format=PathCallingFormat())
    for name, method, bucket, key, params, expires in PRESIGN_CASES:
        url = conn.generate_url(expires, method, bucket, key, params=dict(params) if params else None,
                                expires_in_absolute=True)
        qa = "&".join("%s=%s" % kv for kv in params.items()) if params else None
        sts = auth.canonical_string(method, bucket, key, query_args=qa, headers={}, expires=expires)
        sig = auth.encode(SK, sts)
        p = ", ".join("(%s, %s)" % (swift(k), swift(v)) for k, v in (params or {}).items())
        print("    KSSPresignVector(%s, %s, bucket: %s, key: %s, params: [%s], expires: %d,\n"
              "                     stringToSign: %s,\n"
              "                     signature: %s,\n"
              "                     url: %s)," % (
                  swift(name), swift(method), swift(bucket), swift(key), p, expires, swift(sts), swift(sig), swift(url)))


KEY_PIECES = ["a", "Z", "0", "-", "_", ".", "~", " ", "+", "*", "'", "!", "(", ")", "=", "&", "%", "#", "?",
              ",", ";", "@", "$", "[", "]", "é", "ü", "ß", "日本", "語", "😀", "/", "//", "\t"]
SIGNED = [("acl", None), ("uploads", None), ("delete", None), ("tagging", None), ("versionId", "v/1+2"),
          ("response-content-type", "text/plain; charset=utf-8"),
          ("response-content-disposition", 'attachment; filename="a b.txt"'), ("storageClass", None)]
UNSIGNED = [("prefix", "dir/é"), ("delimiter", "/"), ("max-keys", "1000"), ("list-type", "2"),
            ("encoding-type", "url"), ("continuation-token", "t+/=="), ("marker", "a b")]


def random_case(rng, n):
    key = "".join(rng.choice(KEY_PIECES) for _ in range(rng.randint(0, 12))).lstrip("/")
    query = {}
    if rng.random() < 0.3:
        query["partNumber"] = str(rng.randint(1, 10000))
        query["uploadId"] = rng.choice(["abc", "a/b+c=", "2~x"])
    for name, value in rng.sample(SIGNED + UNSIGNED, rng.randint(0, 3)):
        query[name] = value
    headers = [("Date", D)]
    if rng.random() < 0.5:
        headers.append(("Content-Type", rng.choice(["", "text/plain", "application/octet-stream", "image/jpeg"])))
    if rng.random() < 0.4:
        headers.append(("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="))
    for _ in range(rng.randint(0, 3)):
        name = rng.choice(["x-kss-meta-mtime", "X-Kss-Meta-Mode", "x-kss-storage-class", "x-kss-acl",
                           "x-kss-meta-note", "X-KSS-META-Ünïcode"])
        headers.append((name, rng.choice(["1751371200.25", "33188", "STANDARD_IA", "private", " lead",
                                          "trail ", "a  b", "é"])))
    method = rng.choice(["GET", "PUT", "POST", "DELETE", "HEAD"])
    bucket = rng.choice(["mybucket", "my.bucket-2", ""]) if key == "" else rng.choice(["mybucket", "b-1"])
    return ("random-%d" % n, method, bucket, key, query, headers)


def main_json(count, seed):
    rng = random.Random(seed)
    out = []
    for n in range(count):
        name, method, bucket, key, query, headers = random_case(rng, n)
        sts = auth.canonical_string(method, bucket, key, query or None, dict(headers))
        out.append({"name": name, "method": method, "bucket": bucket, "key": key,
                    "query": [[k, v] for k, v in query.items()], "headers": [list(h) for h in headers],
                    "path": PathCallingFormat().build_path_base(bucket, key),
                    "stringToSign": sts, "signature": auth.encode(SK, sts)})
    json.dump({"seed": seed, "cases": out}, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    if "--json" in sys.argv:
        args = sys.argv[1:]
        count = int(args[args.index("--random") + 1]) if "--random" in args else 200
        seed = int(args[args.index("--seed") + 1]) if "--seed" in args else random.randrange(1 << 30)
        main_json(count, seed)
    else:
        main()
