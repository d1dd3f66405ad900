"""Loopback addresses for tests: a port nobody listens on, a stream URL to nowhere."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port_url() -> str:
    """A meetcap stream URL on loopback where no server listens (connections refused)."""
    return f"ws://127.0.0.1:{free_port()}/v1/stream"
