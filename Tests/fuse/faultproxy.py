"""A TCP proxy in front of the Swift server that breaks connections the ways networks and
servers do, for the fault-injection tests (Tests/fuse/test_faults.py). Python standard library
only.

    python3 Tests/fuse/faultproxy.py --listen PORT --to HOST:PORT --control PORT [--seed N]

Each accepted connection is relayed to --to. While faults are on (a rate set through the
control port), each new connection draws one fault with that probability:
  reset-request   the connection is cut after part of the request was relayed
  reset-response  cut after part of the response (a truncated body, or no status line)
  slowdown        the first request is answered `503 Service Unavailable` (as a busy server
                  or S3's SlowDown), then the connection is closed
  stall           nothing moves for --stall seconds, then the relay goes on
  slow-uplink     client-to-server bytes are relayed at --uplink bytes/s
`refuse N` breaks every open connection and closes new ones at once for N seconds (a server
that is down). `slow N` relays every new connection's client-to-server bytes at N bytes/s (a
slow server or uplink, no fault; 0 ends it); open connections are closed so that clients
reconnect through it.

Control (one line in, one JSON line out, on 127.0.0.1:--control):
  rate 0.3      faults on, 30 % of new connections (open ones are closed: clients reconnect)
  refuse 5      refuse connections for 5 seconds
  slow 300000   every new connection's uplink at 300,000 bytes/s (0: full speed again)
  stats         {"connections": n, "faults": {kind: count}}
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import threading
import time

KINDS = ["reset-request", "reset-response", "slowdown", "stall", "slow-uplink"]


class State:
    def __init__(self, seed: int, stall: float, uplink: int):
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.rate = 0.0
        self.refuse_until = 0.0
        self.stall = stall
        self.uplink = uplink
        self.slow = 0
        self.connections = 0
        self.faults = {k: 0 for k in KINDS}
        self.faults["refused"] = 0
        self.open: set[socket.socket] = set()

    def draw(self) -> tuple[str | None, int]:
        with self.lock:
            self.connections += 1
            if time.monotonic() < self.refuse_until:
                self.faults["refused"] += 1
                return "refused", 0
            if self.rng.random() >= self.rate:
                return None, 0
            kind = self.rng.choice(KINDS)
            self.faults[kind] += 1
            return kind, self.rng.randint(1, 64 * 1024)


def close_quietly(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


def pump(src: socket.socket, dst: socket.socket, cut_after: int | None, rate: int | None, stall: float,
         done: threading.Event) -> None:
    """Copies src to dst; cuts both after `cut_after` bytes; at most `rate` bytes/s; a stall
    of `stall` seconds before the first byte."""
    sent = 0
    try:
        if stall:
            time.sleep(stall)
        while not done.is_set():
            data = src.recv(16384 if rate is None else max(1, min(16384, rate // 10)))
            if not data:
                break
            if cut_after is not None and sent + len(data) >= cut_after:
                dst.sendall(data[: max(0, cut_after - sent)])
                break
            dst.sendall(data)
            sent += len(data)
            if rate is not None:
                time.sleep(len(data) / rate)
    except OSError:
        pass
    finally:
        done.set()
        close_quietly(src)
        close_quietly(dst)


def handle(client: socket.socket, target: tuple[str, int], state: State) -> None:
    kind, n = state.draw()
    if kind == "refused":
        close_quietly(client)
        return
    if kind == "slowdown":
        try:
            client.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    break
                head += chunk
            client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 0\r\n"
                           b"Connection: close\r\n\r\n")
        except OSError:
            pass
        close_quietly(client)
        return
    try:
        upstream = socket.create_connection(target, timeout=10)
        upstream.settimeout(None)
        client.settimeout(None)
    except OSError:
        close_quietly(client)
        return
    with state.lock:
        state.open.update((client, upstream))
    done = threading.Event()
    up_cut = n if kind == "reset-request" else None
    down_cut = n if kind == "reset-response" else None
    stall = state.stall if kind == "stall" else 0.0
    uplink = state.uplink if kind == "slow-uplink" else (state.slow or None)
    threading.Thread(target=pump, args=(client, upstream, up_cut, uplink, stall, done), daemon=True).start()
    pump(upstream, client, down_cut, None, stall, done)
    with state.lock:
        state.open.difference_update((client, upstream))


def serve_control(sock: socket.socket, state: State) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        with conn:
            line = conn.makefile().readline().split()
            reply: dict = {}
            if line[:1] == ["rate"] and len(line) == 2:
                # Faults on: the connections open so far, made without faults, are closed, or a
                # client that keeps them alive would carry all its traffic through them.
                with state.lock:
                    state.rate = float(line[1])
                    victims = list(state.open) if state.rate > 0 else []
                for v in victims:
                    close_quietly(v)
            elif line[:1] == ["refuse"] and len(line) == 2:
                # The server goes down: open connections break, new ones are refused.
                with state.lock:
                    state.refuse_until = time.monotonic() + float(line[1])
                    victims = list(state.open)
                for v in victims:
                    close_quietly(v)
            elif line[:1] == ["slow"] and len(line) == 2:
                with state.lock:
                    state.slow = int(line[1])
                    victims = list(state.open)
                for v in victims:
                    close_quietly(v)
            with state.lock:
                reply = {"connections": state.connections, "faults": dict(state.faults), "rate": state.rate,
                         "slow": state.slow}
            conn.sendall((json.dumps(reply) + "\n").encode())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--to", required=True)
    ap.add_argument("--control", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stall", type=float, default=3.0)
    ap.add_argument("--uplink", type=int, default=200_000)
    a = ap.parse_args()
    host, port = a.to.rsplit(":", 1)
    state = State(a.seed, a.stall, a.uplink)
    control = socket.socket()
    control.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    control.bind(("127.0.0.1", a.control))
    control.listen(16)
    threading.Thread(target=serve_control, args=(control, state), daemon=True).start()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", a.listen))
    listener.listen(256)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=handle, args=(client, (host, int(port)), state), daemon=True).start()


if __name__ == "__main__":
    raise SystemExit(main())
