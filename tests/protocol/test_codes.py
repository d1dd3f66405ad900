"""Close codes: each has a name, and retryable versus fatal is what the spec says."""

from __future__ import annotations

import pytest

from meetcap.protocol import CloseCode, is_retryable, is_retryable_http
from meetcap.protocol.codes import CODES_BY_NAME, ERROR_NAMES

RETRY = {1001, 1006, 1011, 1012, 4002, 4003, 4009, 4010, 4011, 4013, None}
FATAL = {1000, 1009, 4000, 4001, 4004, 4005, 4006, 4007, 4008, 4012}


def test_every_error_code_has_a_unique_name():
    for code in CloseCode:
        if code not in (CloseCode.NORMAL, CloseCode.GOING_AWAY):
            assert code in ERROR_NAMES
    assert len(set(ERROR_NAMES.values())) == len(ERROR_NAMES)
    assert all(CODES_BY_NAME[name] == code for code, name in ERROR_NAMES.items())


@pytest.mark.parametrize("code", sorted(RETRY, key=lambda c: c or 0))
def test_retryable_codes(code):
    assert is_retryable(code)


@pytest.mark.parametrize("code", sorted(FATAL))
def test_fatal_codes(code):
    assert not is_retryable(code)


def test_http_refusals():
    assert not any(is_retryable_http(s) for s in (401, 403, 404))
    assert all(is_retryable_http(s) for s in (429, 500, 502, 503, 504))
