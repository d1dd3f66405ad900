"""Per-IP limits: how many connections one address holds, how fast it may handshake.

Per-user caps (docs/protocol.md 8.3) start only once a token is known; these come first,
so one address cannot hold thousands of sockets or try tokens at line rate. Counted per
peer address of the TCP connection:

* open connections (from the TCP accept to its close, handshakes under way included):
  at most ``max_connections``; an upgrade beyond it gets HTTP 429 with ``Retry-After``;
* handshakes (upgrade requests, refused ones included): a token bucket of
  ``handshake_burst`` refilled at ``handshakes_per_s``; beyond it, 429 with the wait.

Loopback and other ``exempt`` networks are not limited: a TLS-terminating proxy on the
same host connects from there (every client would share its address), and the desktop
app's built-in server serves only loopback. A limit of 0 turns that limit off.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# Refill state of a bucket is two floats; a full bucket is the same as none, so the map
# is swept of full ones when it grows (many addresses, each seen once, keep nothing).
_SWEEP_ABOVE = 4096
CONNECTIONS_RETRY_S = 5


@dataclass(frozen=True, slots=True)
class IpRefusal:
    """Why an upgrade from one address is refused, and when to try again (seconds)."""

    message: str
    retry_after_s: int


class PerIpLimits:
    """See module doc. Runs on the event loop thread only (no locking)."""

    def __init__(
        self, *, max_connections: int, handshakes_per_s: float, handshake_burst: int,
        exempt: Iterable[str] = (), clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_connections = max_connections
        self.handshakes_per_s = handshakes_per_s
        self.handshake_burst = handshake_burst
        self._exempt = tuple(ipaddress.ip_network(net, strict=False) for net in exempt)
        self._clock = clock
        self.open: dict[str, int] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, at)

    def exempt(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:  # a Unix socket or an odd transport: not an IP to limit
            return True
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self._exempt)

    # -- connections (the transport's connection_made / connection_lost)

    def opened(self, address: str) -> None:
        self.open[address] = self.open.get(address, 0) + 1

    def closed(self, address: str) -> None:
        left = self.open.get(address, 0) - 1
        if left > 0:
            self.open[address] = left
        else:
            self.open.pop(address, None)

    def over_connections(self, address: str) -> bool:
        """More connections from ``address`` than allowed (this one counted)."""
        return (
            self.max_connections > 0 and self.open.get(address, 0) > self.max_connections
            and not self.exempt(address)
        )

    # -- handshakes (process_request)

    def check_handshake(self, address: str) -> IpRefusal | None:
        """Count one upgrade request from ``address``; the refusal if over a limit."""
        if self.exempt(address):
            return None
        if self.handshakes_per_s > 0 and self.handshake_burst > 0:
            now = self._clock()
            tokens, at = self._buckets.get(address, (float(self.handshake_burst), now))
            tokens = min(self.handshake_burst, tokens + (now - at) * self.handshakes_per_s)
            if tokens < 1:
                self._buckets[address] = (tokens, now)
                wait_s = math.ceil((1 - tokens) / self.handshakes_per_s)
                return IpRefusal(
                    f"too many connection attempts from {address} (at most "
                    f"{self.handshakes_per_s:g} a second, bursts of {self.handshake_burst})",
                    max(1, wait_s),
                )
            self._buckets[address] = (tokens - 1, now)
            if len(self._buckets) > _SWEEP_ABOVE:
                self._sweep(now)
        # This request's own connection is already counted (opened at accept).
        if self.over_connections(address):
            return IpRefusal(
                f"too many connections from {address} (at most {self.max_connections} at once)",
                CONNECTIONS_RETRY_S,
            )
        return None

    def _sweep(self, now: float) -> None:
        full = [
            address for address, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self.handshakes_per_s >= self.handshake_burst
        ]
        for address in full:
            del self._buckets[address]

    @property
    def tracked_addresses(self) -> int:
        """Addresses with state kept (for tests: nothing may grow without bound)."""
        return len(self._buckets) + len(self.open)
