"""The multi-worker listening socket: TCP_NODELAY on every accepted connection."""

from __future__ import annotations

import socket

from ownrank.service.server import _TcpConfig


def test_shared_listening_socket_is_tcp_with_nodelay() -> None:
    config = _TcpConfig("ownrank.service.app:create_app_from_env", host="127.0.0.1", port=0)
    sock = config.bind_socket()
    try:
        # asyncio sets TCP_NODELAY on accepted sockets only when the protocol says TCP
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        sock.listen()
        client = socket.create_connection(sock.getsockname())
        accepted, _addr = sock.accept()
        with client, accepted:
            assert accepted.proto == socket.IPPROTO_TCP
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        sock.close()
