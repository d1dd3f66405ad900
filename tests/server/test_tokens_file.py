"""The tokens file is read like ssh reads a key (issue 11, finding 3): a file that is not
UTF-8 is a one-line error with exit status 2 (before: exit 1 and a traceback), and a
file other users can read starts the server with a one-line warning (before: silence)."""

from __future__ import annotations

import os
import sys

import pytest

from tests.server.test_cli import server_cli
from tests.support.server_proc import ServerProcess

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")

VALID = "alice alice-token-123\n"


def test_a_tokens_file_that_is_not_utf8_is_a_one_line_error(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_bytes(b"alice alice-token-123\nbob bob-token-\xff4567\n")
    tokens.chmod(0o600)
    result = server_cli("--tokens-file", str(tokens), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(tokens) in lines[0] and "line 2" in lines[0] and "UTF-8" in lines[0]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o666])
def test_a_tokens_file_others_can_read_starts_with_a_one_line_warning(tmp_path, mode):
    tokens = tmp_path / "tokens"
    tokens.write_text(VALID)
    tokens.chmod(mode)
    server = ServerProcess(tmp_path / "data", {"tokens_file": tokens}).start()
    try:
        warnings = [line for line in server.output if str(tokens) in line]
    finally:
        server.kill()
    assert len(warnings) == 1, server.output
    assert "WARNING" in warnings[0] and f"{mode:04o}" in warnings[0]
    assert "chmod 600" in warnings[0]


def test_a_private_tokens_file_starts_without_a_warning(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(VALID)
    os.chmod(tokens, 0o600)
    server = ServerProcess(tmp_path / "data", {"tokens_file": tokens}).start()
    try:
        output = list(server.output)
    finally:
        server.kill()
    assert not any("WARNING" in line for line in output), output
