"""When to reconnect: exponential backoff with full jitter and quick-failure tracking.

Live audio cannot wait long for a reconnect, so the delays are short: the first retry
comes within ``base_s`` (250 ms by default, well under a second) and no wait exceeds
``cap_s`` (5 s by default; the websockets library's own default of 90 s suits crawlers,
not meetings). Full jitter (sleep a uniform random time in ``[0, min(cap, base * 2**n)]``,
the AWS Architecture Blog's "Exponential Backoff And Jitter") spreads a crowd of clients
that lost the same server, so a restart is not met by a thundering herd.

The backoff resets only after a connection that stayed healthy (welcomed, and up for
``healthy_after_s``). A connection that opens and is closed at once counts as a failure,
so a server that accepts and immediately drops every connection does not get hammered at
the base delay (pipecat's quick-failure tracking, ``utils/network.py``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConnectionSpan:
    """How one connection attempt went, for :meth:`Backoff.record`.

    ``opened`` is True when the WebSocket handshake completed, ``welcomed`` when the
    server accepted the session (welcome received), ``lifetime_s`` how long the
    connection stayed open (0 when it never opened).
    """

    opened: bool
    welcomed: bool
    lifetime_s: float


class Backoff:
    """Delays between reconnect attempts of one session link.

    Call :meth:`record` after every connection attempt ends (whatever the outcome), then
    :meth:`next_delay_s` for how long to wait before the next one. Not thread-safe: one
    asyncio task owns it.
    """

    def __init__(
        self,
        base_s: float = 0.25,
        cap_s: float = 5.0,
        healthy_after_s: float = 10.0,
        quick_failure_s: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError(f"backoff needs 0 < base_s <= cap_s, got base {base_s}, cap {cap_s}")
        self.base_s = base_s
        self.cap_s = cap_s
        self.healthy_after_s = healthy_after_s
        self.quick_failure_s = quick_failure_s
        self._rng = rng or random.Random()
        self.attempt = 0  # failures since the last healthy connection
        self.quick_failures = 0  # connections in a row that opened and closed at once

    def ceiling_s(self) -> float:
        """The upper bound of the next delay: ``min(cap, base * 2**(failures - 1))``.

        After the first failure it is ``base_s``, so the first retry comes within it.
        """
        # Clamp the exponent: 2.0 ** 1100 overflows a float after a day of failures.
        exponent = min(max(self.attempt - 1, 0), 64)
        return min(self.cap_s, self.base_s * 2.0**exponent)

    def record(self, span: ConnectionSpan) -> None:
        """Account for one finished connection attempt."""
        if span.welcomed and span.lifetime_s >= self.healthy_after_s:
            self.reset()
            return
        self.attempt += 1
        if span.opened and span.lifetime_s < self.quick_failure_s:
            self.quick_failures += 1
        elif span.opened:
            # It stayed up a while but not long enough to count as healthy: not "at once".
            self.quick_failures = 0

    def reset(self) -> None:
        """Forget past failures (a healthy connection proved the path works)."""
        self.attempt = 0
        self.quick_failures = 0

    def next_delay_s(self, at_least_s: float = 0.0) -> float:
        """A full-jitter delay for the next attempt.

        ``at_least_s`` is a wait the server asked for (going_away, rate_limited): the
        result is that wait plus a jitter of up to ``base_s``, so clients told the same
        moment still spread out.
        """
        if at_least_s > 0:
            return at_least_s + self._rng.uniform(0.0, self.base_s)
        return self._rng.uniform(0.0, self.ceiling_s())
