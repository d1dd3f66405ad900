"""A meetcap server inside the test's own event loop, for tests that patch its parts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from meetcap.server import MeetcapServer, ServerConfig, serve
from tests.server.conftest import FAST
from tests.support.server_proc import OTHER_TOKEN, OTHER_USER, TOKEN, USER

TOKENS = {TOKEN: USER, OTHER_TOKEN: OTHER_USER}


def config(data_dir: Path, **overrides: object) -> ServerConfig:
    settings: dict[str, object] = dict(FAST, tokens=TOKENS, port=0, data_dir=data_dir)
    settings.update(overrides)
    return ServerConfig(**settings)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(data_dir: Path, **overrides: object) -> AsyncIterator[MeetcapServer]:
    server = await serve(config(data_dir, **overrides))
    try:
        yield server
    finally:
        await server.shutdown()
