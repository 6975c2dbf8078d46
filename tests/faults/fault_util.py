"""Helpers for the fault tests: misbehaving HTTP peers on 127.0.0.1 (one that accepts and never answers, one
that streams bytes forever), /proc readings of the server, and a bounded wait."""

import os
import socket
import threading
import time


def proc_status(pid, field):
    """An integer field of /proc/PID/status (Threads, VmRSS in kB); None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def thread_names(pid):
    names = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                names.append(f.read().strip())
    except OSError:
        pass
    return sorted(names)


def wait_until(predicate, timeout_s, interval_s=0.1):
    """Polls predicate() until it is true or timeout_s passes; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)


class RawServer:
    """A TCP server on 127.0.0.1 running `serve(conn, server)` on a thread per connection. Counts
    connections, and for each one records when the peer closed it (recv returned b"" or failed)."""

    def __init__(self, serve):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.serve = serve
        self.lock = threading.Lock()
        self.accepted = 0
        self.closed_by_peer = 0
        self.got_request = threading.Event()
        self.stopping = threading.Event()
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path="/img.png"):
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        try:
            self.serve(conn, self)
        except OSError:
            pass
        with self.lock:
            self.closed_by_peer += 1

    def read_request(self, conn):
        """Reads up to the end of the request headers (or the peer's close)."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return data
            data += chunk
        self.got_request.set()
        return data

    def counts(self):
        with self.lock:
            return self.accepted, self.closed_by_peer

    def close(self):
        self.stopping.set()
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


def stalled_server():
    """Accepts, reads the request, never answers; returns when the client hangs up."""
    def serve(conn, server):
        server.read_request(conn)
        while not server.stopping.is_set():
            if not conn.recv(4096):  # blocks until the peer closes (or sends more)
                return
    return RawServer(serve)


def endless_server(chunk=64, interval_s=0.05):
    """Answers 200 image/png without a length and streams `chunk` bytes every interval_s until the
    client hangs up (about 1.3 KB/s: under every size limit for a long time)."""
    def serve(conn, server):
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n"
                     b"\x89PNG\r\n\x1a\n")
        while not server.stopping.is_set():
            conn.sendall(b"\0" * chunk)  # raises once the client has closed the connection
            time.sleep(interval_s)
    return RawServer(serve)
