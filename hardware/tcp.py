"""TCP plumbing shared by the project's endpoints."""

from __future__ import annotations

import socket


def listen_tcp(host: str, port: int, backlog: int = 4) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: an ephemeral one).

    The socket is closed again if binding or listening fails, so a refused address
    leaks nothing.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(backlog)
    except OSError:
        listener.close()
        raise
    return listener
