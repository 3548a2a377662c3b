#!/usr/bin/env python3
"""Writes vectors.json: ks3sdk 1.18.0's client-side encryption (`local_encrypt=True`) of known
plaintexts, made by the SDK's own code (ks3.encryptFp.EncryptFp, ks3.encryption.Crypts), for
the Swift codec's tests. Run with a Python that has ks3sdk==1.18.0 (and pycryptodome, which it
imports), e.g. the tests' virtualenv: /tmp/objmount-test-venv/bin/python make_vectors.py.
The SDK draws a random IV per object; here it is set to a fixed one after the context is made.
"""

import base64
import hashlib
import io
import json
import os

from ks3.encryptFp import EncryptFp
from ks3.encryption import Crypts


def plaintext(n: int, salt: int = 0) -> bytes:
    return bytes((i * 7 + 3 + salt) % 251 for i in range(n))


class Context:
    """What the SDK keeps per upload (ks3.key / ks3.multipart: key, first_iv, calc_iv, part_num, iv_dict)."""

    def __init__(self, key: bytes, iv: bytes):
        self.key = key
        self.first_iv = iv
        self.calc_iv = b""
        self.part_num = 0
        self.iv_dict = {}


def read_all(efp) -> bytes:
    out = b""
    while True:
        chunk = efp.read(8192)  # the size ks3.key reads with
        if not chunk:
            return out
        out += chunk


def digest(b: bytes) -> dict:
    d = {"size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
    if len(b) <= 96:
        d["hex"] = b.hex()
    else:
        d["tail_hex"] = b[-48:].hex()
    return d


def main() -> None:
    key = b"1234567890123456"
    iv = bytes(range(16))
    out = {
        "key_hex": key.hex(),
        "iv_hex": iv.hex(),
        # ks3.key: x-kss-meta-key = base64(hex(md5(key))), x-kss-meta-iv = base64(IV).
        "meta_key": base64.b64encode(hashlib.md5(key).hexdigest().encode()).decode(),
        "meta_iv": base64.b64encode(iv).decode(),
        "pad_chars": {str(n): Crypts(key).pad_dict[n] for n in range(1, 17)},
        "put": [],
        "multipart": [],
    }
    out["known"] = {
        "hello world": Crypts(key).encrypt(b"hello world", iv).hex(),
        "0123456789abcdef": Crypts(key).encrypt(b"0123456789abcdef", iv).hex(),
    }
    for n in [1, 15, 16, 17, 31, 32, 33, 100, 8191, 8192, 8193, 16384, 20000]:
        body = read_all(EncryptFp(io.BytesIO(plaintext(n)), Context(key, iv), "put"))
        out["put"].append({"plain_size": n, "body": digest(body)})
    # Multipart: non-last parts a multiple of 16; part k chains from part k-1's last block.
    for sizes in [[16384, 8208, 5], [8192, 16], [32, 48, 16], [5242880, 1000]]:
        ctx = Context(key, iv)
        parts = []
        offset = 0
        for k, size in enumerate(sizes, start=1):
            ctx.part_num = k
            fp = io.BytesIO(plaintext(sum(sizes))[offset:offset + size])
            efp = EncryptFp(fp, ctx, "upload_part", isUploadFirstPart=(k == 1), isUploadLastPart=(k == len(sizes)))
            parts.append(read_all(efp))
            offset += size
        whole = read_all(EncryptFp(io.BytesIO(plaintext(sum(sizes))), Context(key, iv), "put"))
        out["multipart"].append({
            "part_plain_sizes": sizes,
            "parts": [digest(p) for p in parts],
            "same_as_put": b"".join(parts) == whole,
        })
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
