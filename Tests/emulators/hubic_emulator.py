#!/usr/bin/env python3
"""Hubic API emulator for tests (the real service, api.hubic.com, was shut down).

Emulates the OAuth2 and API endpoints that Hubic clients used (lhubic 1.0.11, hubic_token /
hubicfuse, svfs, rclone), and hands out REAL credentials of a local OpenStack Swift test server
(obtained from its tempauth), so a Hubic client can go on and use Swift exactly as with Hubic.
Standard library only.

    python3 Tests/emulators/hubic_emulator.py --port N \\
        --swift-auth http://127.0.0.1:8080/auth/v1.0 --swift-user test:tester --swift-key testing \\
        [--client-id ID --client-secret S --user EMAIL --password PW] \\
        [--access-token-ttl SECONDS] [--state-file F] [--redirect-uri URI ...] [--quota BYTES] \\
        [--default-container NAME] [--keep-refresh-tokens] [--host 127.0.0.1]

`--port 0` picks a free port. Prints `listening on http://127.0.0.1:N` on stdout when ready.
Logs one line per request on stderr; tokens, codes, passwords and secrets are never logged in full.

Endpoints (base URL http://127.0.0.1:N, both with and without the trailing slash):
  GET  /oauth/auth/?client_id&redirect_uri&scope&response_type=code&state
                       200 HTML authorization page with <input type="hidden" name="oauth" value="N">
  POST /oauth/auth/    grant form (oauth, action=accepted, one field per scope, login, user_pwd)
                       -> 302 <redirect_uri>?code=..&scope=..&state=..; bad login -> 200 page again
                       with class="text-error"
  POST /oauth/token/   client auth by HTTP Basic or client_id/client_secret form fields;
                       grant_type=authorization_code (code, redirect_uri) or refresh_token
  GET  /1.0/account, /1.0/account/usage, /1.0/account/credentials  (Authorization: Bearer)
  GET  /oauth          301 to /oauth/ (hubic_token checks this)
Test-only (not part of Hubic):
  POST /_test/expire-all            every access token issued so far expires now
  POST /_test/empty-refresh?count=N the next N refresh grants answer 200 with an empty body
                                    (a documented Hubic quirk that lhubic works around)
  GET  /_test/stats                 request counters (JSON)

Facts and their sources: ../shared/PROTOCOLS.md section 2; the error tables of Hubic's API
sandbox docs (api.hubic.com/sandbox, as quoted by client code); rclone issues 1470/1989;
hubicfuse's hubic_token script and issues 35/133; svfs scripts/hubic-application.rb.
Behaviour marked (inferred) has no source.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import html
import json
import os
import secrets
import string
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from serving import serve_until_signalled  # (this directory: the script's own)

ALNUM = string.ascii_letters + string.digits

DEFAULT_CLIENT_ID = "api_hubic_objmount_test"
DEFAULT_CLIENT_SECRET = "objmount-test-client-secret"
DEFAULT_USER = "tester@example.com"
DEFAULT_PASSWORD = "tester-password"

ACCESS_TOKEN_TTL = 21600          # Hubic: 6 h (rclone#377, hubicfuse#133 log)
CODE_TTL = 600                    # (inferred) authorization codes live 10 minutes
PENDING_TTL = 3600                # (inferred) an authorization page stays usable for 1 hour
SWIFT_TIMEOUT = 30

# Scopes Hubic knew, with the permission letters each accepts (lhubic, hubic_token, sandbox).
KNOWN_SCOPES = {
    "usage": "r",
    "account": "r",
    "getAllLinks": "r",
    "credentials": "r",
    "activate": "w",
    "links": "drw",
    "sponsorCode": "r",
    "sponsored": "r",
}
SCOPE_LABELS = {
    "usage": "Get account usage",
    "account": "Get account information",
    "getAllLinks": "Get all published links in one call",
    "credentials": "Get OpenStack credentials, eg. access to your files",
    "activate": "Send activation email",
    "links": "Add new/Get/Delete published link",
    "sponsorCode": "Get your sponsor code",
    "sponsored": "Get the people you sponsored",
}

try:  # Hubic's API answered with Paris local time, e.g. "2017-06-12T11:10:23+02:00"
    from zoneinfo import ZoneInfo

    EXPIRES_TZ: datetime.tzinfo = ZoneInfo("Europe/Paris")
except Exception:  # no tz database: a fixed +01:00 keeps the documented shape
    EXPIRES_TZ = datetime.timezone(datetime.timedelta(hours=1))


def log(msg: str) -> None:
    sys.stderr.write(f"hubic-emulator: {msg}\n")
    sys.stderr.flush()


def redact(secret: str | None) -> str:
    """Enough of a token to correlate log lines, never the whole value."""
    if not secret:
        return "-"
    shown = secret[:4] if len(secret) >= 16 else ""
    return f"{shown}...({len(secret)})"


def new_token(length: int) -> str:
    return "".join(secrets.choice(ALNUM) for _ in range(length))


def rfc3339_colon(epoch: float) -> str:
    """`2026-11-22T10:00:00+01:00`: seconds, no fraction, colon in the offset (lhubic cuts
    the colon out at index 22 before strptime(%z))."""
    s = datetime.datetime.fromtimestamp(int(epoch), EXPIRES_TZ).isoformat(timespec="seconds")
    if s.endswith("Z") or len(s) != 25 or s[22] != ":":  # never happens with a real zone
        s = datetime.datetime.fromtimestamp(
            int(epoch), datetime.timezone(datetime.timedelta(hours=1))).isoformat(timespec="seconds")
    return s


def parse_scope(text: str) -> dict[str, str] | None:
    """`usage.r,credentials.r,links.drw` -> {"usage": "r", ...}; None if malformed/unknown."""
    out: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, dot, perms = item.partition(".")
        allowed = KNOWN_SCOPES.get(name)
        if not dot or allowed is None or not perms or any(p not in allowed for p in perms):
            return None
        out[name] = "".join(p for p in allowed if p in perms or p in out.get(name, ""))
    return out or None


def format_scope(scope: dict[str, str]) -> str:
    return ",".join(f"{k}.{v}" for k, v in scope.items() if v)


class SwiftUpstream:
    """The real Swift test server behind the emulator (tempauth v1)."""

    def __init__(self, auth_url: str, user: str, key: str, default_container: str, quota: int):
        self.auth_url, self.user, self.key = auth_url, user, key
        self.default_container = default_container
        self.quota = quota
        self._prepared = False
        self._lock = threading.Lock()

    def _request(self, method: str, url: str, headers: dict[str, str]):
        req = urllib.request.Request(url, method=method, headers=headers)
        return urllib.request.urlopen(req, timeout=SWIFT_TIMEOUT)

    def credentials(self) -> tuple[str, str, float]:
        """(token, storage url, expiry epoch) from tempauth. Tempauth hands out the same token
        until it expires, as Hubic did (~24 h, svfs#30)."""
        with self._request("GET", self.auth_url,
                           {"X-Auth-User": self.user, "X-Auth-Key": self.key}) as r:
            token = r.headers.get("X-Auth-Token") or r.headers.get("X-Storage-Token")
            url = r.headers.get("X-Storage-Url")
            try:
                remaining = int(r.headers.get("X-Auth-Token-Expires", "86400"))
            except ValueError:
                remaining = 86400
        if not token or not url:
            raise RuntimeError("tempauth answered without X-Auth-Token / X-Storage-Url")
        self._prepare(token, url)
        return token, url, time.time() + remaining

    def _prepare(self, token: str, url: str) -> None:
        """Once: make the account look like a Hubic one. Hubic created the `default` container
        (the one its web UI showed; lhubic README) and exposed the quota as X-Account-Meta-Quota
        (hubicfuse cloudfsapi.c, lhubic README)."""
        with self._lock:
            if self._prepared:
                return
            self._prepared = True
            if self.default_container:
                cont = url.rstrip("/") + "/" + urllib.parse.quote(self.default_container, safe="")
                try:
                    with self._request("PUT", cont, {"X-Auth-Token": token, "Content-Length": "0"}):
                        pass
                except Exception as e:  # noqa: BLE001 - report, never fail the API call
                    log(f"warning: could not create container {self.default_container!r}: {e}")
            if self.quota > 0:
                try:
                    with self._request("POST", url, {"X-Auth-Token": token, "Content-Length": "0",
                                                     "X-Account-Meta-Quota": str(self.quota)}):
                        pass
                except Exception as e:  # noqa: BLE001
                    log(f"warning: could not set X-Account-Meta-Quota: {e}")

    def usage(self) -> tuple[int, int]:
        token, url, _ = self.credentials()
        with self._request("HEAD", url, {"X-Auth-Token": token}) as r:
            used = int(r.headers.get("X-Account-Bytes-Used", "0") or 0)
            quota = int(r.headers.get("X-Account-Meta-Quota", "0") or 0)
        return (self.quota or quota), used


class State:
    """All OAuth state, behind one lock; refresh/access tokens optionally persisted."""

    def __init__(self, args: argparse.Namespace):
        self.lock = threading.Lock()
        self.client_id: str = args.client_id
        self.client_secret: str = args.client_secret
        self.user: str = args.user
        self.password: str = args.password
        self.redirect_uris: list[str] = args.redirect_uri or []
        self.ttl: int = args.access_token_ttl
        self.keep_refresh_tokens: bool = args.keep_refresh_tokens
        self.state_file: str | None = args.state_file
        self.pending: dict[str, dict] = {}     # oauth id -> authorization request
        self.codes: dict[str, dict] = {}       # code -> grant
        self.refresh_tokens: dict[str, dict] = {}
        self.access_tokens: dict[str, dict] = {}
        self.empty_refresh = 0
        self.stats: dict[str, int] = {k: 0 for k in (
            "authorize_page", "authorize_error", "grant_ok", "grant_bad_login", "grant_error",
            "token_code", "token_refresh", "token_error", "token_empty_refresh",
            "api_ok", "api_expired", "api_not_found", "api_error", "credentials")}
        self._stats_lock = threading.Lock()
        self._load()

    def bump(self, counter: str) -> None:
        with self._stats_lock:
            self.stats[counter] += 1

    def stats_snapshot(self) -> dict[str, int]:
        with self._stats_lock:
            return dict(self.stats)

    # persistence ------------------------------------------------------------------------
    def _load(self) -> None:
        if not self.state_file or not os.path.exists(self.state_file):
            return
        with open(self.state_file, encoding="utf-8") as f:
            data = json.load(f)
        self.refresh_tokens = data.get("refresh_tokens", {})
        self.access_tokens = data.get("access_tokens", {})
        log(f"loaded {len(self.refresh_tokens)} refresh and {len(self.access_tokens)} access "
            f"tokens from {self.state_file}")

    def save(self) -> None:
        """Called with the lock held."""
        if not self.state_file:
            return
        tmp = f"{self.state_file}.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"refresh_tokens": self.refresh_tokens,
                       "access_tokens": self.access_tokens}, f)
        os.replace(tmp, self.state_file)

    # helpers ----------------------------------------------------------------------------
    def redirect_allowed(self, uri: str) -> bool:
        parsed = urllib.parse.urlsplit(uri)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.fragment:
            return False
        return not self.redirect_uris or uri in self.redirect_uris

    def issue_access_token(self, client_id: str, user: str, scope: dict[str, str],
                           refresh_token: str) -> str:
        token = new_token(32)
        self.access_tokens[token] = {"client_id": client_id, "user": user, "scope": scope,
                                     "refresh_token": refresh_token,
                                     "expires": time.time() + self.ttl}
        return token


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx/1.4.7"     # what api.hubic.com announced (rclone#1470 logs)
    sys_version = ""

    st: State
    swift: SwiftUpstream

    # plumbing ---------------------------------------------------------------------------
    def version_string(self) -> str:
        return self.server_version

    def log_request(self, code="-", size="-") -> None:  # noqa: D401 - our own, redacted line
        extra = getattr(self, "_log_extra", "")
        log(f'{self.client_address[0]} "{self.command or "-"} {self._safe_path()}" {code}{extra}')

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        log(format % args)

    def _safe_path(self) -> str:
        parts = urllib.parse.urlsplit(getattr(self, "path", "") or "")
        if not parts.query:
            return parts.path
        q = [(k, redact(v) if k in ("code", "access_token", "refresh_token", "user_pwd",
                                     "client_secret", "password", "state") else v)
             for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
        return parts.path + "?" + urllib.parse.urlencode(q, safe=".,()/:")

    def _note(self, text: str) -> None:
        self._log_extra = getattr(self, "_log_extra", "") + " " + text

    def _send(self, status: int, body: bytes = b"", content_type: str | None = None,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: dict, api: bool = False) -> None:
        body = json.dumps(obj, separators=(",", ":")).encode()
        if api:  # /1.0 answers (rclone#1470 dump)
            self._send(status, body, "application/json; charset=utf8",
                       {"Cache-Control": "private", "Access-Control-Allow-Origin": "*"})
        else:
            self._send(status, body, "application/json")

    def _token_error(self, status: int, error: str, description: str) -> None:
        # Key order as Hubic sent it: {"error_description":"invalid refresh token",
        # "error":"invalid_request"} (rclone#1989; hubic_token parses in that order).
        self.st.bump("token_error")
        self._note(f"error={error}")
        self._json(status, {"error_description": description, "error": error})

    def _api_error(self, status: int, error: str, description: str) -> None:
        self._note(f"error={error}/{description}")
        self._json(status, {"error": error, "error_description": description}, api=True)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(8)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > 1 << 20:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length else b""

    def _form(self) -> dict[str, list[str]]:
        """Hubic only accepted application/x-www-form-urlencoded bodies (sandbox docs)."""
        body = self._read_body()
        ctype = self.headers.get("Content-Type", "application/x-www-form-urlencoded")
        if "application/x-www-form-urlencoded" not in ctype.lower():
            return {}
        return urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)

    @staticmethod
    def _one(form: dict[str, list[str]], key: str) -> str:
        v = form.get(key)
        return v[0] if v else ""

    def _route(self) -> str:
        path = urllib.parse.urlsplit(self.path).path
        return path if path == "/" else path.rstrip("/")

    # dispatch ---------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        self._log_extra = ""
        route, m = self._route(), self.command
        try:
            if route == "/oauth" and urllib.parse.urlsplit(self.path).path == "/oauth":
                self._read_body()
                self._send(301, b"", "text/html", {"Location": "/oauth/"})
            elif route == "/oauth/auth" and m in ("GET", "HEAD"):
                self.authorize_page()
            elif route == "/oauth/auth" and m == "POST":
                self.grant()
            elif route == "/oauth/token" and m == "POST":
                self.token()
            elif route == "/oauth/token":
                self._read_body()
                self._token_error(400, "invalid_request", "missing parameters")
            elif route in ("/1.0/account", "/1.0/account/usage", "/1.0/account/credentials") \
                    and m in ("GET", "HEAD"):
                self.api(route)
            elif route == "/_test/expire-all" and m == "POST":
                self._read_body()
                with self.st.lock:
                    now = time.time()
                    n = 0
                    for rec in self.st.access_tokens.values():
                        if rec["expires"] > now:
                            rec["expires"] = now - 1
                            n += 1
                    self.st.save()
                self._json(200, {"expired": n})
            elif route == "/_test/empty-refresh" and m == "POST":
                self._read_body()
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                with self.st.lock:
                    self.st.empty_refresh = int((q.get("count") or ["1"])[0])
                self._json(200, {"empty_refresh": self.st.empty_refresh})
            elif route == "/_test/stats" and m == "GET":
                stats = self.st.stats_snapshot()
                with self.st.lock:
                    stats["access_tokens"] = len(self.st.access_tokens)
                    stats["refresh_tokens"] = len(self.st.refresh_tokens)
                self._json(200, stats)
            else:
                self._read_body()
                self._note("error=not_found")
                self._json(404, {"error": "not_found", "message": "resource not found"}, api=True)
        except (ConnectionError, BrokenPipeError):
            raise
        except Exception as e:  # noqa: BLE001 - answer 500 as Hubic did, keep serving
            log(f"internal error on {self.command} {self._safe_path()}: {type(e).__name__}: {e}")
            self._json(500, {"error": "server_error", "message": "please retry"}, api=True)

    # OAuth: authorization page ------------------------------------------------------------
    def _error_page(self, status: int) -> None:
        # What api.hubic.com served for an unknown client id (hubicfuse#133); svfs reports any
        # non-200 here as "wrong client id or redirect URL".
        body = ('<?xml version="1.0" encoding="utf-8"?>\n'
                '<?modxslt-stylesheet type="text/xsl" media="screen" alternate="no" '
                'href="../en/error.xsl" ?>\n'
                '<?xml-stylesheet type="text/xsl" href="../en/error.xsl"?>\n\n'
                '<page>\n</page>\n').encode()
        self.st.bump("authorize_error")
        self._send(status, body, "text/xml; charset=utf-8")

    def _error_redirect(self, redirect_uri: str, error: str, description: str,
                        state: str | None) -> None:
        # Sandbox docs: on error "our login application will redirect user to your application
        # with two parameters in the URL: error, and error_description" (hubic_token reads them
        # from the 302 Location).
        params = [("error", error), ("error_description", description)]
        if state:
            params.append(("state", state))
        sep = "&" if urllib.parse.urlsplit(redirect_uri).query else "?"
        self.st.bump("authorize_error")
        self._note(f"error={error}")
        self._send(302, b"", "text/html",
                   {"Location": redirect_uri + sep + urllib.parse.urlencode(params)})

    def authorize_page(self) -> None:
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, keep_blank_values=True)
        client_id, redirect_uri, scope_text, response_type, state = (
            self._one(q, k) for k in ("client_id", "redirect_uri", "scope", "response_type",
                                      "state"))
        if not client_id or client_id != self.st.client_id:
            self._note("error=unknown_client")
            return self._error_page(401)
        if redirect_uri and self.st.redirect_allowed(redirect_uri):
            back = redirect_uri
        elif self.st.redirect_uris:
            back = self.st.redirect_uris[0]   # the application's registered redirect (inferred)
        else:
            self._note("error=bad_redirect_uri")
            return self._error_page(400)
        if not redirect_uri or not scope_text or not response_type:
            return self._error_redirect(back, "invalid_request", "missing arguments", state)
        if back != redirect_uri:
            return self._error_redirect(back, "invalid_request", "please verify redirect uri", state)
        if response_type != "code":
            # Hubic also had the implicit flow (response_type=token); not emulated.
            return self._error_redirect(back, "unsupported_response_type",
                                        "response type must be set to code or token", state)
        scope = parse_scope(scope_text)
        if scope is None:
            return self._error_redirect(back, "invalid_scope", "please verify scope", state)
        with self.st.lock:
            now = time.time()
            for k in [k for k, v in self.st.pending.items() if v["created"] + PENDING_TTL < now]:
                del self.st.pending[k]
            oauth = str(secrets.randbelow(900000) + 100000)
            while oauth in self.st.pending:
                oauth = str(secrets.randbelow(900000) + 100000)
            self.st.pending[oauth] = {"client_id": client_id, "redirect_uri": redirect_uri,
                                      "scope": scope, "state": state, "created": now}
            self.st.bump("authorize_page")
        self._send(200, self._page(oauth, scope, ""), "text/html; charset=utf-8")

    def _page(self, oauth: str, scope: dict[str, str], error: str) -> bytes:
        rows = []
        for name, perms in scope.items():
            for p in perms:
                rows.append(f'<label class="checkbox"><input type="checkbox" name="{name}" '
                            f'value="{p}" checked="checked"> {html.escape(SCOPE_LABELS[name])} '
                            f'({p})</label>')
        err = ""
        if error:
            # hubic_token prints the line that follows the class="text-error" line.
            err = (f'<div class="alert alert-error">\n<p class="text-error">\n'
                   f'{html.escape(error)}\n</p>\n</div>\n')
        page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>hubiC - Application authorization</title>
</head>
<body>
<div class="container">
<h1>hubiC</h1>
<h2>An application requests access to your hubiC account</h2>
{err}<form class="form-horizontal" method="POST" action="/oauth/auth/">
<input type="hidden" name="oauth" value="{oauth}"><input type="hidden" name="action" value="accepted">
<fieldset>
<legend>Requested permissions</legend>
{chr(10).join(rows)}
</fieldset>
<fieldset>
<legend>Sign in to accept</legend>
<label for="login">Email</label>
<input type="text" id="login" name="login" value="">
<label for="user_pwd">Password</label>
<input type="password" id="user_pwd" name="user_pwd" value="">
</fieldset>
<button type="submit" class="btn btn-primary">Accept</button>
</form>
</div>
</body>
</html>
"""
        return page.encode()

    # OAuth: grant form -------------------------------------------------------------------
    def grant(self) -> None:
        form = self._form()
        oauth = self._one(form, "oauth")
        with self.st.lock:
            req = self.st.pending.get(oauth)
            if req is None or req["created"] + PENDING_TTL < time.time():
                self.st.bump("grant_error")
                self._note("error=unknown_oauth")
                return self._error_page(400)
            if self._one(form, "action") != "accepted":   # (inferred) the user refused
                del self.st.pending[oauth]
                return self._error_redirect(req["redirect_uri"], "access_denied",
                                            "user refused", req["state"])
            login, pwd = self._one(form, "login"), self._one(form, "user_pwd")
            if login.lower() != self.st.user.lower() or pwd != self.st.password:
                # Wrong login: the page again, status 200, no Location (hubic_token, hubicfuse#35)
                self.st.bump("grant_bad_login")
                self._note("error=bad_login")
                return self._send(200, self._page(
                    oauth, req["scope"], "Authentication failed, please check your credentials"),
                    "text/html; charset=utf-8")
            # Granted: what was requested AND ticked in the form (links=r&links=w&links=d from
            # lhubic, links=drw from hubic_token); account.r is always granted (hubic_token).
            granted: dict[str, str] = {}
            for name, perms in req["scope"].items():
                posted = "r" if name == "account" else "".join(form.get(name, []))
                letters = "".join(p for p in perms if p in posted)
                if letters:
                    granted[name] = letters
            granted.setdefault("account", "r")
            del self.st.pending[oauth]
            code = str(int(time.time())) + new_token(22)   # e.g. 1575816242S8EV4vCZJ8...
            self.st.codes[code] = {"client_id": req["client_id"], "user": self.st.user,
                                   "redirect_uri": req["redirect_uri"], "scope": granted,
                                   "expires": time.time() + CODE_TTL}
            self.st.bump("grant_ok")
        params = [("code", code), ("scope", format_scope(granted))]
        if req["state"]:
            params.append(("state", req["state"]))
        sep = "&" if urllib.parse.urlsplit(req["redirect_uri"]).query else "?"
        self._note(f"code={redact(code)}")
        self._send(302, b"", "text/html", {
            "Location": req["redirect_uri"] + sep + urllib.parse.urlencode(params, safe=",.")})

    # OAuth: token endpoint ---------------------------------------------------------------
    def _client_auth(self, form: dict[str, list[str]]) -> tuple[str, str]:
        auth = self.headers.get("Authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                cid, _, secret = base64.b64decode(auth[6:].strip()).decode().partition(":")
                return cid, secret
            except Exception:  # noqa: BLE001
                return "", ""
        return self._one(form, "client_id"), self._one(form, "client_secret")

    def token(self) -> None:
        form = self._form()
        cid, secret = self._client_auth(form)
        grant_type = self._one(form, "grant_type")
        self._note(f"grant={grant_type or '-'}")
        if not cid or cid != self.st.client_id or not secrets.compare_digest(
                secret.encode(), self.st.client_secret.encode()):
            return self._token_error(401, "unauthorized_client", "please verify credentials")
        if not grant_type:
            return self._token_error(400, "invalid_request", "missing parameters")
        if grant_type == "authorization_code":
            return self._token_from_code(form, cid)
        if grant_type == "refresh_token":
            return self._token_from_refresh(form, cid)
        return self._token_error(400, "invalid_request",
                                 "grant type must be set to authorization_code")

    def _token_from_code(self, form: dict[str, list[str]], cid: str) -> None:
        code, redirect_uri = self._one(form, "code"), self._one(form, "redirect_uri")
        if not code or not redirect_uri:
            return self._token_error(400, "invalid_request", "missing parameters")
        with self.st.lock:
            grant = self.st.codes.get(code)
            if grant is None or grant["client_id"] != cid:
                return self._token_error(400, "invalid_request", "invalid code")
            if grant["expires"] < time.time():
                del self.st.codes[code]
                return self._token_error(400, "invalid_request", "expired code")
            if grant["redirect_uri"] != redirect_uri:
                return self._token_error(400, "invalid_request", "please verify redirect uri")
            del self.st.codes[code]                      # single use
            if not self.st.keep_refresh_tokens:
                # A new grant invalidates the refresh tokens handed out before (hubic_token).
                for rec in self.st.refresh_tokens.values():
                    if rec["client_id"] == cid and rec["user"] == grant["user"]:
                        rec["revoked"] = True
            refresh = new_token(64)
            self.st.refresh_tokens[refresh] = {"client_id": cid, "user": grant["user"],
                                               "scope": grant["scope"], "revoked": False,
                                               "created": time.time()}
            access = self.st.issue_access_token(cid, grant["user"], grant["scope"], refresh)
            self.st.bump("token_code")
            self.st.save()
        self._note(f"access={redact(access)} refresh={redact(refresh)}")
        # Key order as Hubic sent it (hubic_token's sed relies on refresh_token first).
        self._json(200, {"refresh_token": refresh, "expires_in": self.st.ttl,
                         "access_token": access, "token_type": "Bearer"})

    def _token_from_refresh(self, form: dict[str, list[str]], cid: str) -> None:
        refresh = self._one(form, "refresh_token")
        if not refresh:
            return self._token_error(400, "invalid_request", "missing parameters")
        with self.st.lock:
            rec = self.st.refresh_tokens.get(refresh)
            if rec is None or rec["client_id"] != cid or rec.get("revoked"):
                return self._token_error(400, "invalid_request", "invalid refresh token")
            if self.st.empty_refresh > 0:
                self.st.empty_refresh -= 1
                self.st.bump("token_empty_refresh")
                self._note("quirk=empty-200")
                return self._send(200, b"", "application/json")
            access = self.st.issue_access_token(cid, rec["user"], rec["scope"], refresh)
            self.st.bump("token_refresh")
            self.st.save()
        self._note(f"refresh={redact(refresh)} access={redact(access)}")
        # No new refresh token (hubicfuse#133 log): the old one stays valid.
        self._json(200, {"expires_in": self.st.ttl, "access_token": access,
                         "token_type": "Bearer"})

    # API ---------------------------------------------------------------------------------
    def api(self, route: str) -> None:
        self._read_body()
        auth = self.headers.get("Authorization", "")
        if auth[:7].lower() != "bearer " or not auth[7:].strip():
            self.st.bump("api_error")
            return self._api_error(400, "invalid_request", "missing arguments")
        token = auth[7:].strip()
        self._note(f"token={redact(token)}")
        with self.st.lock:
            rec = self.st.access_tokens.get(token)
            if rec is None:
                self.st.bump("api_not_found")
                return self._api_error(401, "invalid_token", "not found")
            if rec["expires"] <= time.time():
                self.st.bump("api_expired")
                return self._api_error(401, "invalid_token", "expired")
            scope = dict(rec["scope"])
        need = {"/1.0/account": "account", "/1.0/account/usage": "usage",
                "/1.0/account/credentials": "credentials"}[route]
        if "r" not in scope.get(need, ""):
            self.st.bump("api_error")
            return self._api_error(400, "insufficient_scope", "this scope is insufficient")
        try:
            if route == "/1.0/account/credentials":
                swift_token, endpoint, expires = self.swift.credentials()
                body = {"token": swift_token, "endpoint": endpoint,
                        "expires": rfc3339_colon(expires)}
                self.st.bump("credentials")
                self._note(f"swift_token={redact(swift_token)}")
            elif route == "/1.0/account/usage":
                quota, used = self.swift.usage()
                body = {"quota": quota, "used": used}
            else:
                body = {"email": rec["user"], "creationDate": "2013-06-22T20:19:42+02:00",
                        "status": "ok", "firstname": "Test", "lastname": "User"}
        except (urllib.error.URLError, OSError, RuntimeError, ValueError) as e:
            log(f"swift upstream failure: {type(e).__name__}: {e}")
            self.st.bump("api_error")
            return self._json(500, {"error": "server_error", "message": "please retry"}, api=True)
        self.st.bump("api_ok")
        self._json(200, body, api=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="0 picks a free port")
    p.add_argument("--swift-auth", required=True, help="tempauth URL, e.g. http://127.0.0.1:8080/auth/v1.0")
    p.add_argument("--swift-user", required=True, help="e.g. test:tester")
    p.add_argument("--swift-key", required=True)
    p.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    p.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    p.add_argument("--user", default=DEFAULT_USER, help="the Hubic account's login (email)")
    p.add_argument("--password", default=DEFAULT_PASSWORD)
    p.add_argument("--access-token-ttl", type=int, default=ACCESS_TOKEN_TTL,
                   help=f"access token lifetime in seconds (Hubic: {ACCESS_TOKEN_TTL})")
    p.add_argument("--state-file", help="keep refresh/access tokens here across restarts (0600)")
    p.add_argument("--redirect-uri", action="append",
                   help="the application's registered redirect URI (repeatable); default: any "
                        "absolute http(s) URI is accepted")
    p.add_argument("--quota", type=int, default=0,
                   help="account quota in bytes: written once as X-Account-Meta-Quota on the "
                        "Swift account (Hubic showed it there) and reported by /1.0/account/usage")
    p.add_argument("--default-container", default="default",
                   help="container created on the Swift account at the first credentials call, "
                        "as Hubic always had it ('' to disable)")
    p.add_argument("--keep-refresh-tokens", action="store_true",
                   help="do not invalidate older refresh tokens when a new grant is made")
    args = p.parse_args(argv)
    if args.access_token_ttl < 1:
        p.error("--access-token-ttl must be >= 1")

    Handler.st = State(args)
    Handler.swift = SwiftUpstream(args.swift_auth, args.swift_user, args.swift_key,
                                  args.default_container, args.quota)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    log(f"client_id={args.client_id} user={args.user} access_token_ttl={args.access_token_ttl}s "
        f"swift_auth={args.swift_auth} swift_user={args.swift_user}")
    return serve_until_signalled(server, args.host)


if __name__ == "__main__":
    sys.exit(main())
