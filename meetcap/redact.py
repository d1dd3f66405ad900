"""Secrets never reach a log: a logging filter that blanks them at every level.

At debug level the websockets library logs each handshake header (``Authorization:
Bearer <token>``), the request path with its query string, and the start and end of
every frame, which shows the resume token of a ``hello`` or ``welcome``.
:class:`SecretFilter` rewrites such records before any handler sees them:

* header lines of ``Authorization``, ``Proxy-Authorization``, ``Cookie`` and
  ``Set-Cookie``: the value becomes ``[redacted]``;
* a request path's query string: ``?[redacted]``;
* a text frame's ``"..._token": "..."`` fields: ``"[redacted]"`` (before websockets
  elides the frame for display, so no piece of the value survives);
* then, in the whole message and any traceback: ``Bearer``/``Basic`` credentials,
  ``token=`` / ``key=`` / ``secret=`` / ``password=`` query parameters,
  ``"..._token"`` JSON fields and the password of a ``scheme://user:password@host`` URL.

:func:`install` puts it on the websockets loggers (a filter on a logger sees only the
records logged through that logger, not its children's, hence one per logger).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
WEBSOCKETS_LOGGERS = ("websockets.server", "websockets.client")

_JSON_TOKEN = re.compile(r'("[A-Za-z_]*token"\s*:\s*)"(?:[^"\\]|\\.)*(?:"|$)', re.IGNORECASE)
_CREDENTIALS = re.compile(r"\b(Bearer|Basic)(\s+)[^\s'\",]+", re.IGNORECASE)
_QUERY_SECRET = re.compile(
    r"([?&;][^=&\s]*(?:token|key|secret|password|passwd|auth|session)[^=&\s]*=)[^&\s'\"]*",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s@:]*:)[^/\s@]*@")
_HEADER_LINE = re.compile(
    r"\b(Authorization|Proxy-Authorization|Cookie|Set-Cookie)(\s*:\s*).*", re.IGNORECASE
)


def redact_text(text: str) -> str:
    """``text`` with every secret this module knows the shape of blanked."""
    text = _JSON_TOKEN.sub(rf'\1"{REDACTED}"', text)
    text = _HEADER_LINE.sub(rf"\1\2{REDACTED}", text)
    text = _CREDENTIALS.sub(rf"\1\2{REDACTED}", text)
    text = redact_url(text)
    return _QUERY_SECRET.sub(rf"\1{REDACTED}", text)


def redact_url(url: str) -> str:
    """``url`` (or any text) with the password of ``scheme://user:password@host`` blanked."""
    return _URL_PASSWORD.sub(rf"\1{REDACTED}@", url)


def _redact_path(path: str) -> str:
    base, sep, _query = path.partition("?")
    return f"{base}?{REDACTED}" if sep else path


def _redact_frame(frame: Any) -> Any:
    """A websockets Frame whose text payload has its token fields blanked."""
    try:
        text = bytes(frame.data).decode("utf-8")
    except UnicodeDecodeError:
        return frame  # audio, not text
    redacted = _JSON_TOKEN.sub(rf'\1"{REDACTED}"', text)
    return frame if redacted == text else replace(frame, data=redacted.encode())


def _redact_args(msg: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    out = list(args)
    # websockets: "< %s: %s" / "> %s: %s" (a header), "< %s %s %s" (a request line),
    # "> GET %s HTTP/1.1" (the client's), "< %s" / "> %s" (a frame).
    if msg.endswith("%s: %s") and len(out) == 2 and str(out[0]).lower() in SECRET_HEADERS:
        out[1] = REDACTED
    for index, arg in enumerate(out):
        if isinstance(arg, str) and arg.startswith("/"):
            out[index] = _redact_path(arg)
        elif type(arg).__name__ == "Frame" and hasattr(arg, "data"):
            out[index] = _redact_frame(arg)
    return tuple(out)


class SecretFilter(logging.Filter):
    """Rewrites each record with its secrets blanked (see the module doc); never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if isinstance(record.args, tuple) and record.args:
                record.args = _redact_args(str(record.msg), record.args)
            message = record.getMessage()
            record.msg, record.args = redact_text(message), ()
            if record.exc_info and not record.exc_text:
                record.exc_text = redact_text(
                    logging.Formatter().formatException(record.exc_info)
                )
        except Exception:  # noqa: BLE001 - a log line must never break the caller
            record.msg, record.args = "(a log message could not be checked for secrets)", ()
            record.exc_info = record.exc_text = None
        return True


_FILTER = SecretFilter()


def install(loggers: Iterable[str] = WEBSOCKETS_LOGGERS) -> None:
    """Put the filter on these loggers (idempotent)."""
    for name in loggers:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def install_on_handlers(handlers: Iterable[logging.Handler]) -> None:
    """Put the filter on these handlers too: it then sees every record they write,
    whatever logger it came from (the command-line server's own log)."""
    for handler in handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


__all__ = [
    "REDACTED", "SecretFilter", "install", "install_on_handlers", "redact_text", "redact_url",
]
