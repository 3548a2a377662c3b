"""What the test emulators share: serve an HTTP server until SIGTERM/SIGINT, after announcing
`listening on http://HOST:PORT` on stdout (the line scripts/test.sh and the tests wait for)."""

from __future__ import annotations

import signal
from http.server import ThreadingHTTPServer


def serve_until_signalled(server: ThreadingHTTPServer, host: str) -> int:
    server.daemon_threads = True

    def stop(signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening on http://{host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0
