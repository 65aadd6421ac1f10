"""A fault-injecting TCP proxy for the Kafka protocol.

`AnswerDroppingProxy` sits between clients and one broker and forwards both ways, frame by
frame. Every `drop_every`-th Produce request goes on to the broker, but when its answer comes
back the proxy closes the connection instead of passing the answer on: the broker has
appended the records, and the client does not know it. That is the fault an idempotent
producer exists for: its retry must not write the records twice.

The broker must advertise the proxy's address (`--advertised-listener`), so that clients
reconnect through the proxy after reading metadata. While the broker is down (a `kill -9`
test), connections are refused by closing them at once.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import deque

API_KEY_PRODUCE = 0


def _recv_exact(sock: socket.socket, count: int) -> bytes | None:
    chunks = []
    while count > 0:
        chunk = sock.recv(count)
        if not chunk:
            return None
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def _read_frame(sock: socket.socket) -> bytes | None:
    size = _recv_exact(sock, 4)
    if size is None:
        return None
    (length,) = struct.unpack(">i", size)
    body = _recv_exact(sock, length)
    return None if body is None else size + body


class AnswerDroppingProxy:
    def __init__(self, target_port: int, drop_every: int = 5):
        self.target_port = target_port
        self.drop_every = drop_every
        self.produces_seen = 0
        self.answers_dropped = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            # Per connection: for each request forwarded, whether to drop its answer.
            pending: deque[bool] = deque()
            threading.Thread(target=self._requests, args=(client, upstream, pending), daemon=True).start()
            threading.Thread(target=self._answers, args=(client, upstream, pending), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, pending: deque) -> None:
        try:
            while True:
                frame = _read_frame(client)
                if frame is None:
                    break
                (api_key,) = struct.unpack(">h", frame[4:6])
                drop = False
                if api_key == API_KEY_PRODUCE:
                    with self._lock:
                        self.produces_seen += 1
                        drop = self.produces_seen % self.drop_every == 0
                pending.append(drop)
                upstream.sendall(frame)
        except OSError:
            pass
        finally:
            _close(client, upstream)

    def _answers(self, client: socket.socket, upstream: socket.socket, pending: deque) -> None:
        try:
            while True:
                frame = _read_frame(upstream)
                if frame is None:
                    break
                drop = pending.popleft() if pending else False
                if drop:
                    with self._lock:
                        self.answers_dropped += 1
                    break
                client.sendall(frame)
        except OSError:
            pass
        finally:
            _close(client, upstream)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
