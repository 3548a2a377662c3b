"""Fidelity of the Hubic emulator (Tests/emulators/hubic_emulator.py): the REAL lhubic 1.0.11
client from PyPI, in a virtualenv, runs its documented flows against it.

The only change made to lhubic is pointing its module constants (BASE_URL, AUTH_URL, TOKEN_URL,
HUBIC_API_URL, all hard-coded to https://api.hubic.com/) at the emulator.

Swift: the emulator hands out credentials of a real Swift server from its tempauth. The server
comes from ST_AUTH / ST_USER / ST_KEY (python-swiftclient's variables; `scripts/swift-server.sh
start` provides them). Tests that store objects are SKIPPED when those are unset. The OAuth tests
then run against STUB_TEMPAUTH below, a fake that only answers tempauth's token request (it is
not Swift and stores nothing).

The virtualenv is cached in ${OBJMOUNT_TEST_VENV:-/tmp/objmount-test-venv}; lhubic (with its
dependencies requests and python-swiftclient) is pip-installed there from PyPI if missing.
"""

from __future__ import annotations

import base64
import dataclasses
import fcntl
import json
import os
import re
import secrets
import select
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import pytest

from processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
EMULATOR = ROOT / "Tests" / "emulators" / "hubic_emulator.py"
LHUBIC = "lhubic==1.0.11"
VENV = Path(os.environ.get("OBJMOUNT_TEST_VENV") or "/tmp/objmount-test-venv")

SWIFT_VARS = ("ST_AUTH", "ST_USER", "ST_KEY")
HAVE_SWIFT = all(os.environ.get(v) for v in SWIFT_VARS)
requires_swift = pytest.mark.skipif(
    not HAVE_SWIFT,
    reason="no Swift server: ST_AUTH, ST_USER and ST_KEY are unset "
           "(scripts/swift-server.sh start provides them)")

TIMEOUT = 120


# --------------------------------------------------------------------------------------------
# The virtualenv with the real lhubic
# --------------------------------------------------------------------------------------------

def _lhubic_version(python: Path) -> str | None:
    if not python.exists():
        return None
    r = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m, lhubic, requests, swiftclient; "
                            "print(m.version('lhubic'))"],
        capture_output=True, text=True, timeout=TIMEOUT)
    return r.stdout.strip() if r.returncode == 0 else None


@pytest.fixture(scope="session")
def lhubic_python() -> Path:
    """The python of a virtualenv holding lhubic 1.0.11 (installed from PyPI when missing)."""
    python = VENV / "bin" / "python"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / f".{VENV.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several pytest runs may share the cached venv
        if _lhubic_version(python) == "1.0.11":
            return python
        steps = []
        if not python.exists():
            steps.append([sys.executable, "-m", "venv", str(VENV)])
        steps.append([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                      LHUBIC])
        for cmd in steps:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                pytest.fail(f"could not prepare the lhubic virtualenv: {' '.join(cmd)} exited "
                            f"{r.returncode}\n{r.stdout}\n{r.stderr}", pytrace=False)
        assert _lhubic_version(python) == "1.0.11"
    return python


# --------------------------------------------------------------------------------------------
# Swift behind the emulator: the real server (ST_*) or, for OAuth-only tests, a STUB
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class SwiftBackend:
    auth: str
    user: str
    key: str
    real: bool
    seen: list = dataclasses.field(default_factory=list)   # stub only: requests it got

    def tempauth(self) -> tuple[str, str]:
        """(X-Auth-Token, X-Storage-Url) straight from the backend's tempauth."""
        req = urllib.request.Request(self.auth, headers={"X-Auth-User": self.user,
                                                         "X-Auth-Key": self.key})
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.headers["X-Auth-Token"], r.headers["X-Storage-Url"]


class _StubTempauthHandler(BaseHTTPRequestHandler):
    """STUB_TEMPAUTH -- NOT A SWIFT SERVER. Used only when ST_AUTH/ST_USER/ST_KEY are unset, so
    the emulator's OAuth endpoints can be tested with lhubic up to (and including) the
    credentials call. It answers tempauth's GET /auth/v1.0 and acknowledges the two account
    set-up requests the emulator makes (PUT of the `default` container, POST of
    X-Account-Meta-Quota) and HEAD of the account. It stores no objects."""

    protocol_version = "HTTP/1.1"
    USER, KEY = "stub:tester", "stub-key-not-a-secret"
    TOKEN = "AUTH_tk" + "5" * 32
    backend: SwiftBackend

    def log_message(self, *args) -> None:
        pass

    def _reply(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _handle(self) -> None:
        self.backend.seen.append((self.command, self.path, dict(self.headers)))
        storage = f"http://127.0.0.1:{self.server.server_address[1]}/v1/AUTH_stub"
        if self.command == "GET" and self.path == "/auth/v1.0":
            if (self.headers.get("X-Auth-User"), self.headers.get("X-Auth-Key")) != (self.USER,
                                                                                     self.KEY):
                return self._reply(401, {"Www-Authenticate": 'Swift realm="stub"'})
            return self._reply(200, {"X-Storage-Url": storage, "X-Auth-Token": self.TOKEN,
                                     "X-Storage-Token": self.TOKEN,
                                     "X-Auth-Token-Expires": "86400"})
        if self.headers.get("X-Auth-Token") != self.TOKEN:
            return self._reply(401)
        if self.command == "PUT" and self.path.startswith("/v1/AUTH_stub/"):
            return self._reply(201)
        if self.command in ("POST", "HEAD") and self.path == "/v1/AUTH_stub":
            return self._reply(204, {"X-Account-Bytes-Used": "1234"})
        return self._reply(404)

    do_GET = do_PUT = do_POST = do_HEAD = _handle


@pytest.fixture
def stub_swift() -> Iterator[SwiftBackend]:
    """STUB_TEMPAUTH on a free port (see _StubTempauthHandler)."""
    handler = type("StubHandler", (_StubTempauthHandler,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    backend = SwiftBackend(auth=f"http://127.0.0.1:{server.server_address[1]}/auth/v1.0",
                           user=handler.USER, key=handler.KEY, real=False)
    handler.backend = backend
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield backend
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def swift(request: pytest.FixtureRequest) -> SwiftBackend:
    """The real Swift server when ST_* are set, else STUB_TEMPAUTH."""
    if HAVE_SWIFT:
        return SwiftBackend(os.environ["ST_AUTH"], os.environ["ST_USER"], os.environ["ST_KEY"],
                            real=True)
    return request.getfixturevalue("stub_swift")


# --------------------------------------------------------------------------------------------
# The emulator process
# --------------------------------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def http(method: str, url: str, data: dict | list | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request, redirects NOT followed; (status, lower-cased headers, body)."""
    body = urllib.parse.urlencode(data, doseq=True).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    if body is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with _OPENER.open(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Emulator:
    base: str
    proc: subprocess.Popen
    log_path: Path
    client_id: str
    client_secret: str
    user: str
    password: str

    def stats(self) -> dict:
        status, _, body = http("GET", self.base + "/_test/stats")
        assert status == 200
        return json.loads(body)

    def expire_all(self) -> int:
        status, _, body = http("POST", self.base + "/_test/expire-all", data={})
        assert status == 200
        return json.loads(body)["expired"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def basic(self, secret: str | None = None) -> dict[str, str]:
        raw = f"{self.client_id}:{self.client_secret if secret is None else secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def start_emulator(swift: SwiftBackend, tmp_path: Path) -> Iterator[Callable[..., Emulator]]:
    """Starts emulators (each on a free port, with fresh random credentials); all stopped in
    teardown."""
    started: list[Emulator] = []

    def start(*extra: str, backend: SwiftBackend | None = None) -> Emulator:
        backend = backend or swift
        n = len(started)
        creds = dict(client_id=f"api_hubic_{secrets.token_hex(8)}",
                     client_secret=f"cs{secrets.token_hex(16)}",
                     user=f"user{secrets.token_hex(3)}@example.com",
                     password=f"pw{secrets.token_hex(12)}")
        port = free_port()
        log_path = tmp_path / f"emulator{n}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [sys.executable, str(EMULATOR), "--port", str(port),
                 "--swift-auth", backend.auth, "--swift-user", backend.user,
                 "--swift-key", backend.key,
                 "--client-id", creds["client_id"], "--client-secret", creds["client_secret"],
                 "--user", creds["user"], "--password", creds["password"], *extra],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True)
        emu = Emulator(base="", proc=proc, log_path=log_path, **creds)
        started.append(emu)
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else ""
        m = re.fullmatch(r"listening on (http://127\.0\.0\.1:(\d+))\n", line)
        if not m:
            emu.stop()
            pytest.fail(f"emulator did not start (stdout {line!r}):\n{emu.log()}", pytrace=False)
        assert int(m.group(2)) == port
        emu.base = m.group(1)
        return emu

    try:
        yield start
    finally:
        for emu in started:
            emu.stop()


# --------------------------------------------------------------------------------------------
# Running lhubic
# --------------------------------------------------------------------------------------------

# Runs inside the virtualenv. Uses lhubic as its README shows: credentials in the HUBIC_*
# environment variables, `hubic = lhubic.Hubic()`, `hubic.os_auth()`, then swiftclient calls.
DRIVER = r'''
import hashlib, json, os, sys, time, uuid
import requests
import lhubic

BASE = os.environ["HUBIC_TEST_API_URL"].rstrip("/") + "/"
lhubic.BASE_URL = BASE
lhubic.TOKEN_URL = BASE + "oauth/token"
lhubic.AUTH_URL = BASE + "oauth/auth"
lhubic.HUBIC_API_URL = BASE + "1.0"


def snap(h):
    return {"access_token": h.access_token, "refresh_token": h.refresh_token,
            "token_type": getattr(h, "token_type", None),
            "token_expires_in": None if h.token_expire is None else h.token_expire - time.time(),
            "os_auth_token": h.os_auth_token, "os_storage_url": h.os_storage_url,
            "os_token_expire": h.os_token_expire}


def attempt(fn):
    try:
        fn()
        return {"raised": None}
    except Exception as e:
        return {"raised": type(e).__name__, "message": str(e)}


def raw_credentials(token):
    r = requests.get(BASE + "1.0/account/credentials",
                     headers={"Authorization": "Bearer " + token}, timeout=30)
    return {"status": r.status_code, "json": r.json()}


def password():
    hubic = lhubic.Hubic()
    hubic.os_auth()
    return snap(hubic)


def refresh():
    hubic = lhubic.Hubic()      # only HUBIC_CLIENT_ID/SECRET + HUBIC_REFRESH_TOKEN are set
    hubic.os_auth()
    out = snap(hubic)
    r = requests.post(lhubic.TOKEN_URL, {"refresh_token": os.environ["HUBIC_REFRESH_TOKEN"],
                                         "grant_type": "refresh_token"},
                      auth=(hubic.client_id, hubic.client_secret), timeout=30)
    out["raw_refresh"] = {"status": r.status_code, "keys": sorted(r.json()),
                          "expires_in": r.json().get("expires_in"),
                          "token_type": r.json().get("token_type")}
    return out


# lhubic's 401-"expired" handling lives in hubic_get(), which only works BEFORE os_auth():
# with python-swiftclient >= 3.x, Connection.__init__ (run at the end of os_auth) sets
# self.session = None, the attribute lhubic keeps its requests session in. And os_auth() itself
# always calls refresh() first once a refresh token is known. So: auth() (the OAuth dance), then
# hubic_get() as the README's API calls do, then os_auth() for Swift.
def expire_midrun():
    hubic = lhubic.Hubic()
    hubic.auth()
    before = snap(hubic)
    expired = requests.post(BASE + "_test/expire-all", timeout=30).json()["expired"]
    raw = raw_credentials(before["access_token"])
    r = hubic.hubic_get("/account/credentials")   # 401 expired -> refresh() -> same request
    out = {"before": before, "expired": expired, "raw_401": raw, "after": snap(hubic),
           "credentials_after": r.json()}
    hubic.os_auth()
    out["os_auth_token"] = hubic.os_auth_token
    return out


def ttl():
    hubic = lhubic.Hubic()
    hubic.auth()
    before = snap(hubic)
    time.sleep(float(os.environ["HUBIC_TEST_SLEEP"]))
    r = hubic.hubic_get("/account/credentials")   # token_expire has passed -> refresh() first
    return {"before": before, "after": snap(hubic), "credentials_after": r.json()}


def failing():
    hubic = lhubic.Hubic()
    out = attempt(hubic.os_auth)
    out["access_token"] = hubic.access_token
    out["os_auth_token"] = hubic.os_auth_token
    return out


def swift():
    hubic = lhubic.Hubic()
    hubic.os_auth()
    prefix = "objmount-hubic-emulator-test-%s/" % uuid.uuid4().hex
    name = prefix + "photos/my_copy_of_test.bin"
    data = os.urandom(200000) + "é".encode()
    out = {"md5": hashlib.md5(data).hexdigest()}
    out["put_etag"] = hubic.put_object("default", name, data)
    _, listing = hubic.get_container("default", prefix=prefix)
    out["listed"] = [(o["name"], o["bytes"], o["hash"]) for o in listing]
    _, subdirs = hubic.get_container("default", delimiter="/", prefix=prefix)
    out["subdirs"] = [o.get("subdir") for o in subdirs]
    header, content = hubic.get_object("default", name)
    out["get_md5"] = hashlib.md5(content).hexdigest()
    out["get_length"] = header["content-length"]
    out["head_length"] = hubic.head_object("default", name)["content-length"]
    _, containers = hubic.get_account()
    out["containers"] = [c["name"] for c in containers]

    # README: a saved refresh token is enough for a later connection
    again = lhubic.Hubic(refresh_token=hubic.refresh_token)
    again.os_auth()
    out["refresh_access_differs"] = again.access_token != hubic.access_token
    out["refresh_get_md5"] = hashlib.md5(again.get_object("default", name)[1]).hexdigest()

    # the access token expires mid-run: os_auth() meets the API's 401, refreshes, Swift goes on
    later = lhubic.Hubic()
    later.auth()
    requests.post(BASE + "_test/expire-all", timeout=30)
    later.hubic_get("/account/credentials")       # 401 expired -> refresh() -> retried
    later.os_auth()
    out["after_expiry_token_same"] = later.os_auth_token == hubic.os_auth_token
    out["after_expiry_get_md5"] = hashlib.md5(later.get_object("default", name)[1]).hexdigest()

    hubic.delete_object("default", name)
    _, listing = hubic.get_container("default", prefix=prefix)
    out["listed_after_delete"] = [o["name"] for o in listing]
    return out


result = globals()[sys.argv[1]]()
print(json.dumps(result))
'''


@pytest.fixture
def lhubic_run(lhubic_python: Path, tmp_path: Path) -> Callable[..., dict]:
    driver = tmp_path / "lhubic_driver.py"
    driver.write_text(DRIVER)

    def run(emu: Emulator, scenario: str, *, with_password: bool = True,
            refresh_token: str | None = None, **overrides: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUBIC_")}
        env.update(HUBIC_TEST_API_URL=emu.base, HUBIC_CLIENT_ID=emu.client_id,
                   HUBIC_CLIENT_SECRET=emu.client_secret)
        if with_password:
            env.update(HUBIC_USERNAME=emu.user, HUBIC_PASSWORD=emu.password)
        if refresh_token:
            env["HUBIC_REFRESH_TOKEN"] = refresh_token
        env.update(overrides)
        r = subprocess.run([str(lhubic_python), str(driver), scenario], env=env,
                           capture_output=True, text=True, timeout=TIMEOUT)
        if r.returncode != 0:
            pytest.fail(f"lhubic scenario {scenario!r} failed ({r.returncode}):\n{r.stderr}\n"
                        f"--- emulator log ---\n{emu.log()}", pytrace=False)
        return json.loads(r.stdout.strip().splitlines()[-1])

    return run


EXPIRES_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")


# --------------------------------------------------------------------------------------------
# lhubic flows
# --------------------------------------------------------------------------------------------

def test_lhubic_password_flow_gets_the_swift_credentials(start_emulator, lhubic_run, swift):
    emu = start_emulator()
    out = lhubic_run(emu, "password")

    token, storage_url = swift.tempauth()
    assert out["os_auth_token"] == token
    assert out["os_storage_url"] == storage_url
    assert out["token_type"] == "Bearer"
    assert 21500 < out["token_expires_in"] <= 21600
    assert re.fullmatch(r"[A-Za-z0-9]{20,}", out["access_token"])
    assert re.fullmatch(r"[A-Za-z0-9]{20,}", out["refresh_token"])
    assert isinstance(out["os_token_expire"], float)
    stats = emu.stats()
    assert (stats["authorize_page"], stats["grant_ok"], stats["token_code"],
            stats["credentials"]) == (1, 1, 1, 1)

    # the credentials document itself: colon in the offset, about the Swift token's lifetime
    status, headers, body = http("GET", emu.base + "/1.0/account/credentials",
                                 headers={"Authorization": "Bearer " + out["access_token"]})
    assert status == 200 and headers["content-type"].startswith("application/json")
    doc = json.loads(body)
    assert list(doc) == ["token", "endpoint", "expires"]
    assert EXPIRES_RE.fullmatch(doc["expires"]), doc["expires"]


def test_lhubic_refresh_token_flow_gets_no_new_refresh_token(start_emulator, lhubic_run, swift):
    emu = start_emulator()
    first = lhubic_run(emu, "password")
    out = lhubic_run(emu, "refresh", with_password=False, refresh_token=first["refresh_token"])

    assert out["access_token"] != first["access_token"]
    assert out["refresh_token"] == first["refresh_token"]      # lhubic keeps the one it had
    assert out["os_auth_token"] == swift.tempauth()[0]
    assert out["raw_refresh"] == {"status": 200, "keys": ["access_token", "expires_in",
                                                          "token_type"],
                                  "expires_in": 21600, "token_type": "Bearer"}
    stats = emu.stats()
    assert stats["authorize_page"] == 1 and stats["token_refresh"] == 2


def test_lhubic_recovers_from_an_access_token_expiring_mid_run(start_emulator, lhubic_run, swift):
    emu = start_emulator()
    out = lhubic_run(emu, "expire_midrun")

    assert out["expired"] == 1
    # exactly what lhubic tests for before it refreshes
    assert out["raw_401"] == {"status": 401, "json": {"error": "invalid_token",
                                                      "error_description": "expired"}}
    assert out["after"]["access_token"] != out["before"]["access_token"]
    assert out["after"]["refresh_token"] == out["before"]["refresh_token"]
    assert out["credentials_after"]["token"] == out["os_auth_token"] == swift.tempauth()[0]
    stats = emu.stats()
    assert stats["api_expired"] == 2          # the raw probe and lhubic's own request
    assert stats["token_refresh"] == 2        # on the 401, then os_auth()'s own refresh
    assert stats["credentials"] == 2


def test_lhubic_refreshes_a_short_lived_access_token_before_use(start_emulator, lhubic_run):
    emu = start_emulator("--access-token-ttl", "2")
    out = lhubic_run(emu, "ttl", HUBIC_TEST_SLEEP="2.5")

    assert 0 < out["before"]["token_expires_in"] <= 2
    assert out["after"]["access_token"] != out["before"]["access_token"]
    assert out["credentials_after"]["token"]
    stats = emu.stats()
    assert stats["token_refresh"] == 1
    assert stats["api_expired"] == 0          # lhubic saw expires_in and refreshed first
    assert stats["credentials"] == 1


def test_lhubic_wrong_password_fails_clearly(start_emulator, lhubic_run):
    emu = start_emulator()
    out = lhubic_run(emu, "failing", HUBIC_PASSWORD="not-the-password")
    assert out["raised"] == "HubicAuthFailure"
    assert out["message"] == "Failed to request authorization code, check user/password"
    assert out["access_token"] is None and out["os_auth_token"] is None
    stats = emu.stats()
    assert stats["grant_bad_login"] == 1 and stats["grant_ok"] == 0 and stats["token_code"] == 0

    # what the real service answered: the page again (200, no Location) with a text-error line
    status, _, body = http("GET", emu.base + "/oauth/auth/?" + urllib.parse.urlencode(
        {"client_id": emu.client_id, "redirect_uri": "http://localhost/", "scope": "credentials.r",
         "response_type": "code", "state": "s"}))
    oauth = re.search(r'name="oauth" value="(\d+)"', body.decode()).group(1)
    status, headers, body = http("POST", emu.base + "/oauth/auth/", data={
        "oauth": oauth, "action": "accepted", "credentials": "r", "login": emu.user,
        "user_pwd": "wrong"})
    assert status == 200 and "location" not in headers
    lines = body.decode().splitlines()
    i = next(n for n, line in enumerate(lines) if 'class="text-error"' in line)
    assert lines[i + 1].strip() == "Authentication failed, please check your credentials"


def test_lhubic_bad_app_credentials_and_refresh_token_fail(start_emulator, lhubic_run):
    emu = start_emulator()

    out = lhubic_run(emu, "failing", HUBIC_CLIENT_ID="api_hubic_unknown")
    assert out["raised"] == "HubicAuthFailure"
    assert out["message"] == "Failed to request authorization code, check app credentials"

    # Bad secret: the token endpoint answers 401 unauthorized_client. lhubic 1.0.11 then trips
    # over its own log call ("%s : %s" % r.status_code, r.content -> TypeError) before it can
    # raise HubicTokenFailure; either way no token is obtained.
    out = lhubic_run(emu, "failing", HUBIC_CLIENT_SECRET="wrong-secret")
    assert out["raised"] in ("TypeError", "HubicTokenFailure"), out
    assert out["access_token"] is None and out["os_auth_token"] is None

    # Bad refresh token: 400 invalid_request "invalid refresh token" (rclone#1989). lhubic's
    # log call ("...grant %" % r.content) raises ValueError before HubicTokenFailure.
    out = lhubic_run(emu, "failing", with_password=False, refresh_token="bogus" * 8)
    assert out["raised"] in ("ValueError", "HubicTokenFailure"), out
    assert out["access_token"] is None and out["os_auth_token"] is None

    stats = emu.stats()
    assert stats["token_code"] == stats["token_refresh"] == stats["credentials"] == 0
    assert stats["token_error"] == 2


@requires_swift
def test_lhubic_stores_lists_and_reads_objects_in_default(start_emulator, lhubic_run):
    emu = start_emulator()
    out = lhubic_run(emu, "swift")

    assert out["put_etag"] == out["md5"]
    assert [(n.rsplit("/", 2)[-2:], size, h) for n, size, h in out["listed"]] == [
        (["photos", "my_copy_of_test.bin"], 200002, out["md5"])]
    assert len(out["subdirs"]) == 1 and out["subdirs"][0].endswith("/photos/")
    assert out["get_md5"] == out["refresh_get_md5"] == out["after_expiry_get_md5"] == out["md5"]
    assert out["get_length"] == out["head_length"] == "200002"
    assert "default" in out["containers"]
    assert out["refresh_access_differs"] and out["after_expiry_token_same"]
    assert out["listed_after_delete"] == []


def test_emulator_never_logs_secrets(start_emulator, lhubic_run, swift):
    emu = start_emulator()
    first = lhubic_run(emu, "password")
    lhubic_run(emu, "refresh", with_password=False, refresh_token=first["refresh_token"])
    lhubic_run(emu, "expire_midrun")
    lhubic_run(emu, "failing", HUBIC_PASSWORD="another-wrong-password")
    log = emu.log()
    assert log.count('"POST /oauth/token') >= 4
    for secret in (emu.password, "another-wrong-password", emu.client_secret, swift.key,
                   first["access_token"], first["refresh_token"], first["os_auth_token"]):
        assert secret not in log


# --------------------------------------------------------------------------------------------
# Protocol details no lhubic call reaches (other clients relied on them: hubic_token, svfs)
# --------------------------------------------------------------------------------------------

def _authorize(emu: Emulator, redirect: str = "http://localhost/cb",
               scope: str = "usage.r,account.r,credentials.r,links.drw") -> str:
    status, _, body = http("GET", emu.base + "/oauth/auth/?" + urllib.parse.urlencode(
        {"client_id": emu.client_id, "redirect_uri": redirect, "scope": scope,
         "response_type": "code", "state": "xyz"}))
    assert status == 200
    # hubic_token's sed needs the action field right after the oauth one
    m = re.search(r'<input type="hidden" name="oauth" value="(\d+)">'
                  r'<input type="hidden" name="action"', body.decode())
    assert m
    return m.group(1)


def _code(emu: Emulator, redirect: str = "http://localhost/cb") -> str:
    oauth = _authorize(emu, redirect)
    status, headers, _ = http("POST", emu.base + "/oauth/auth/", data=[
        ("oauth", oauth), ("action", "accepted"), ("usage", "r"), ("credentials", "r"),
        ("links", "drw"), ("login", emu.user), ("user_pwd", emu.password)])
    assert status == 302
    loc = urllib.parse.urlsplit(headers["location"])
    assert loc._replace(query="").geturl() == redirect
    q = dict(urllib.parse.parse_qsl(loc.query))
    assert re.fullmatch(r"\d{10}\w+", q["code"]) and q["state"] == "xyz"
    assert q["scope"] == "usage.r,account.r,credentials.r,links.drw"
    return q["code"]


def test_authorization_errors(start_emulator):
    emu = start_emulator()
    status, _, body = http("GET", emu.base + "/oauth")
    assert status == 301                                   # hubic_token's connectivity check
    status, _, body = http("GET", emu.base + "/oauth/auth/?client_id=nope&redirect_uri=http://"
                           "localhost/&scope=credentials.r&response_type=code&state=s")
    assert status != 200 and b'name="oauth"' not in body
    for query, error in (("scope=credentials.r&response_type=token", "unsupported_response_type"),
                         ("scope=nonsense.x&response_type=code", "invalid_scope"),
                         ("response_type=code", "invalid_request")):
        status, headers, _ = http("GET", f"{emu.base}/oauth/auth/?client_id={emu.client_id}"
                                  f"&redirect_uri=http%3A%2F%2Flocalhost%2F&state=s&{query}")
        assert status == 302
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(headers["location"]).query))
        assert q["error"] == error and q["error_description"] and q["state"] == "s"
    status, _, _ = http("POST", emu.base + "/oauth/auth/",
                        data={"oauth": "1", "action": "accepted"})
    assert status != 302


def test_token_endpoint_details(start_emulator):
    emu = start_emulator()
    code = _code(emu)
    token_url = emu.base + "/oauth/token/"

    def token(data, headers=None):
        status, h, body = http("POST", token_url, data=data, headers=headers)
        assert h["content-type"] == "application/json"
        return status, body.decode()

    # client credentials in the form (hubic_token) instead of Basic auth
    creds = {"client_id": emu.client_id, "client_secret": emu.client_secret}
    assert token({**creds, "code": code, "redirect_uri": "http://localhost/other",
                  "grant_type": "authorization_code"}) == (
        400, '{"error_description":"please verify redirect uri","error":"invalid_request"}')
    status, body = token({**creds, "code": code, "redirect_uri": "http://localhost/cb",
                          "grant_type": "authorization_code"})
    assert status == 200
    assert re.fullmatch(r'\{"refresh_token":"\w+","expires_in":21600,"access_token":"\w+",'
                        r'"token_type":"Bearer"\}', body)
    first = json.loads(body)
    # codes are single use
    assert token({**creds, "code": code, "redirect_uri": "http://localhost/cb",
                  "grant_type": "authorization_code"})[1] == \
        '{"error_description":"invalid code","error":"invalid_request"}'
    assert token({"code": code, "redirect_uri": "http://localhost/cb",
                  "grant_type": "authorization_code"}, emu.basic("bad")) == (
        401, '{"error_description":"please verify credentials","error":"unauthorized_client"}')
    assert token({"grant_type": "password"}, emu.basic())[0] == 400
    status, body = token({"refresh_token": first["refresh_token"],
                          "grant_type": "refresh_token"}, emu.basic())
    assert status == 200 and list(json.loads(body)) == ["expires_in", "access_token",
                                                        "token_type"]

    # a new grant invalidates the refresh tokens handed out before (hubic_token)
    status, body = token({"code": _code(emu), "redirect_uri": "http://localhost/cb",
                          "grant_type": "authorization_code"}, emu.basic())
    assert status == 200
    assert token({"refresh_token": first["refresh_token"], "grant_type": "refresh_token"},
                 emu.basic()) == (
        400, '{"error_description":"invalid refresh token","error":"invalid_request"}')
    assert token({"refresh_token": json.loads(body)["refresh_token"],
                  "grant_type": "refresh_token"}, emu.basic())[0] == 200

    # the empty-200 quirk lhubic retries on
    http("POST", emu.base + "/_test/empty-refresh?count=1", data={})
    status, h, raw = http("POST", token_url, data={"refresh_token": json.loads(body)[
        "refresh_token"], "grant_type": "refresh_token"}, headers=emu.basic())
    assert (status, raw) == (200, b"")


def test_api_errors_usage_and_quota(start_emulator, stub_swift):
    emu = start_emulator("--quota", str(25 * 10**9), backend=stub_swift)
    code = _code(emu)
    status, _, body = http("POST", emu.base + "/oauth/token", headers=emu.basic(), data={
        "code": code, "redirect_uri": "http://localhost/cb", "grant_type": "authorization_code"})
    access = json.loads(body)["access_token"]

    def api(path, token):
        status, headers, body = http("GET", emu.base + path,
                                     headers={"Authorization": "Bearer " + token})
        assert headers["content-type"] == "application/json; charset=utf8"
        return status, json.loads(body)

    assert api("/1.0/account/credentials", "unknown") == (
        401, {"error": "invalid_token", "error_description": "not found"})
    assert api("/1.0/account/usage", access) == (200, {"quota": 25 * 10**9, "used": 1234})
    assert api("/1.0/account", access)[1]["email"] == emu.user
    status, doc = api("/1.0/account/credentials", access)
    assert status == 200 and doc["token"] == _StubTempauthHandler.TOKEN
    # the emulator made the account look like Hubic's: `default` exists, quota in the metadata
    setup = [(m, p, h.get("X-Account-Meta-Quota")) for m, p, h in stub_swift.seen
             if m in ("PUT", "POST")]
    assert setup == [("PUT", "/v1/AUTH_stub/default", None),
                     ("POST", "/v1/AUTH_stub", str(25 * 10**9))]

    # scope without credentials.r
    oauth = _authorize(emu, scope="usage.r")
    status, headers, _ = http("POST", emu.base + "/oauth/auth", data={
        "oauth": oauth, "action": "accepted", "usage": "r", "login": emu.user,
        "user_pwd": emu.password})
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(headers["location"]).query))["code"]
    _, _, body = http("POST", emu.base + "/oauth/token", headers=emu.basic(), data={
        "code": code, "redirect_uri": "http://localhost/cb", "grant_type": "authorization_code"})
    assert api("/1.0/account/credentials", json.loads(body)["access_token"]) == (
        400, {"error": "insufficient_scope", "error_description": "this scope is insufficient"})


def test_state_file_keeps_tokens_across_restarts(start_emulator, swift, tmp_path):
    state = tmp_path / "hubic-state.json"
    emu = start_emulator("--state-file", str(state))
    _, _, body = http("POST", emu.base + "/oauth/token", headers=emu.basic(), data={
        "code": _code(emu), "redirect_uri": "http://localhost/cb",
        "grant_type": "authorization_code"})
    tokens = json.loads(body)
    emu.stop()
    assert oct(state.stat().st_mode & 0o777) == "0o600"

    again = start_emulator("--state-file", str(state), "--client-id", emu.client_id,
                           "--client-secret", emu.client_secret)
    status, _, _ = http("GET", again.base + "/1.0/account/credentials",
                        headers={"Authorization": "Bearer " + tokens["access_token"]})
    assert status == 200
    status, _, _ = http("POST", again.base + "/oauth/token", headers=emu.basic(), data={
        "refresh_token": tokens["refresh_token"], "grant_type": "refresh_token"})
    assert status == 200
