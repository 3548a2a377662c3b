#!/usr/bin/env python3
"""A TCP proxy on loopback that adds latency and counts bytes, for scripts/bench.sh.

    python3 bench/delayproxy.py --listen PORT --to HOST:PORT [--rtt-ms 20] --control PORT

Every connection accepted on 127.0.0.1:--listen is relayed to --to. With --rtt-ms R > 0 each
chunk of data is held for R/2 ms in each direction (so a request/response pair costs R ms of
round trip), and the first client bytes of a connection wait one more R (the TCP handshake
a real far-away server would cost). Bandwidth is not limited and there is no loss: this
emulates distance only, not a slow link. With --rtt-ms 0 the data is moved with splice(2)
(no copy into the process) and only counted.

Counters (bytes client->server "up", server->client "down", connections) are served as one
JSON line to whoever connects to 127.0.0.1:--control. Python standard library only. Stops on
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import collections
import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time

CHUNK = 256 << 10
QUEUE_LIMIT = 64 << 20  # bytes held per direction before the reader waits
F_SETPIPE_SZ = 1031


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.up = 0
        self.down = 0
        self.conns = 0
        self.active = 0

    def add(self, direction: str, n: int):
        with self.lock:
            setattr(self, direction, getattr(self, direction) + n)

    def snapshot(self):
        with self.lock:
            return {"up": self.up, "down": self.down, "conns": self.conns, "active": self.active}


def close_quietly(s):
    try:
        s.close()
    except OSError:
        pass


def relay_splice(src: socket.socket, dst: socket.socket, counters: Counters, direction: str):
    r, w = os.pipe()
    try:
        try:
            fcntl.fcntl(w, F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass
        flags = os.SPLICE_F_MOVE
        while True:
            n = os.splice(src.fileno(), w, 1 << 20, flags=flags)
            if n == 0:
                break
            counters.add(direction, n)
            left = n
            while left:
                left -= os.splice(r, dst.fileno(), left, flags=flags)
    except OSError:
        pass
    finally:
        os.close(r)
        os.close(w)
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class DelayedPipe:
    """One direction of a delayed connection: a reader thread and a writer thread."""

    def __init__(self, src, dst, delay: float, counters: Counters, direction: str, not_before: float):
        self.src, self.dst = src, dst
        self.delay = delay
        self.counters, self.direction = counters, direction
        self.not_before = not_before
        self.queue = collections.deque()
        self.held = 0
        self.cond = threading.Condition()
        self.failed = False

    def start(self):
        threads = [threading.Thread(target=self.read, daemon=True),
                   threading.Thread(target=self.write, daemon=True)]
        for t in threads:
            t.start()
        return threads

    def read(self):
        try:
            while True:
                data = self.src.recv(CHUNK)
                now = time.monotonic()
                due = max(now, self.not_before) + self.delay
                with self.cond:
                    while self.held > QUEUE_LIMIT and not self.failed:
                        self.cond.wait(0.5)
                    if self.failed:
                        return
                    self.queue.append((due, data))
                    self.held += len(data)
                    self.cond.notify_all()
                if not data:
                    return
        except OSError:
            with self.cond:
                self.queue.append((time.monotonic() + self.delay, b""))
                self.cond.notify_all()

    def write(self):
        try:
            while True:
                with self.cond:
                    while not self.queue:
                        self.cond.wait()
                    due, data = self.queue.popleft()
                    self.held -= len(data)
                    self.cond.notify_all()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not data:
                    break
                self.dst.sendall(data)
                self.counters.add(self.direction, len(data))
        except OSError:
            with self.cond:
                self.failed = True
                self.cond.notify_all()
            try:
                self.src.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        try:
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def handle(client: socket.socket, target, delay: float, counters: Counters):
    try:
        upstream = socket.create_connection(target)
    except OSError:
        close_quietly(client)
        return
    for s in (client, upstream):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with counters.lock:
        counters.conns += 1
        counters.active += 1
    try:
        if delay <= 0:
            t = threading.Thread(target=relay_splice, args=(upstream, client, counters, "down"), daemon=True)
            t.start()
            relay_splice(client, upstream, counters, "up")
            t.join()
        else:
            now = time.monotonic()
            up = DelayedPipe(client, upstream, delay, counters, "up", not_before=now + 2 * delay)
            down = DelayedPipe(upstream, client, delay, counters, "down", not_before=now)
            for t in up.start() + down.start():
                t.join()
    finally:
        close_quietly(client)
        close_quietly(upstream)
        with counters.lock:
            counters.active -= 1


def serve_control(sock: socket.socket, counters: Counters):
    while True:
        try:
            c, _ = sock.accept()
        except OSError:
            return
        try:
            c.sendall((json.dumps(counters.snapshot()) + "\n").encode())
        except OSError:
            pass
        close_quietly(c)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--to", required=True, help="HOST:PORT")
    ap.add_argument("--rtt-ms", type=float, default=0.0)
    ap.add_argument("--control", type=int, required=True)
    a = ap.parse_args(argv)
    host, _, port = a.to.rpartition(":")
    target = (host, int(port))
    delay = a.rtt_ms / 2000.0
    counters = Counters()

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", a.listen))
    listener.listen(256)
    control = socket.socket()
    control.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    control.bind(("127.0.0.1", a.control))
    control.listen(16)
    threading.Thread(target=serve_control, args=(control, counters), daemon=True).start()

    def stop(*_):
        close_quietly(listener)
        close_quietly(control)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"proxy 127.0.0.1:{a.listen} -> {a.to}, rtt {a.rtt_ms} ms", flush=True)
    while True:
        try:
            c, _ = listener.accept()
        except OSError:
            return 0
        threading.Thread(target=handle, args=(c, target, delay, counters), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
