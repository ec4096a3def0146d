"""A loopback TCP proxy that a test can cut and restore: a real network outage between two real peers."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading

from monitor.synthetic.broker import free_port


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``. `cut()` drops every connection and refuses new ones
    until `restore()` (a database that resets connections); `blackhole()` keeps every connection open but
    forwards nothing and answers no new one (packets dropped, no reset: a silent database)."""

    def __init__(self, target_host: str, target_port: int, tls: ssl.SSLContext | None = None) -> None:
        """``tls``: a server context to terminate TLS with (clients speak TLS to the proxy, the proxy speaks
        plain TCP to ``target``), as a TLS load balancer in front of a broker does."""
        self.target = (target_host, target_port)
        self._tls = tls
        self.port = free_port()
        self._up = threading.Event()
        self._up.set()
        self._black = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", self.port))
        self._server.listen(64)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self._up.is_set():
                client.close()
                continue
            if self._black.is_set():  # accepted, never answered
                with self._lock:
                    self._conns.append(client)
                continue
            if self._tls is None:
                self._connect(client)
            else:  # the handshake must not hold up the next accept
                threading.Thread(target=self._handshake, args=(client, self._tls), daemon=True).start()

    def _handshake(self, client: socket.socket, tls: ssl.SSLContext) -> None:
        try:
            client.settimeout(5)
            wrapped = tls.wrap_socket(client, server_side=True)
            wrapped.settimeout(None)
        except (OSError, ssl.SSLError):  # a client that does not trust us hangs up: that is the test's point
            client.close()
            return
        self._connect(wrapped)

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        with self._lock:
            self._conns += [client, upstream]
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self._black.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def cut(self) -> None:
        self._up.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def blackhole(self) -> None:
        self._black.set()

    def restore(self) -> None:
        """End a cut or a blackhole. After a blackhole the connections it silenced are dropped (what a peer
        that timed out would have done), so nobody reads a stream with bytes missing in the middle."""
        if self._black.is_set():
            self._black.clear()
            with self._lock:
                conns, self._conns = self._conns, []
            for s in conns:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
        self._up.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._server.close()
