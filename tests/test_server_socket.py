"""Worker sockets: TCP_NODELAY on accepted connections, and one socket per worker."""

from __future__ import annotations

import socket

from ownrank.service.server import listening_socket


def test_worker_socket_is_tcp_with_nodelay() -> None:
    sock = listening_socket("127.0.0.1", 0)
    try:
        # asyncio sets TCP_NODELAY on accepted sockets only when the protocol says TCP
        assert sock.proto == socket.IPPROTO_TCP
        sock.listen()
        client = socket.create_connection(sock.getsockname())
        accepted, _addr = sock.accept()
        with client, accepted:
            assert accepted.proto == socket.IPPROTO_TCP
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        sock.close()


def test_workers_each_bind_the_same_address() -> None:
    first = listening_socket("127.0.0.1", 0)
    second = listening_socket("127.0.0.1", first.getsockname()[1])
    try:
        first.listen()
        second.listen()
        assert first.getsockname() == second.getsockname()
    finally:
        first.close()
        second.close()
