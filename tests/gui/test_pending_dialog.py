"""The pending-recordings dialog against a real meetcap-server: deliver, discard (asked
first), retry a refused recording with new credentials; the work runs off the GUI thread."""

from __future__ import annotations

import hashlib
import json
import time

from meetcap.client.config import account_fingerprint, destination_key
from meetcap.client.pending import deliver, find_pending, list_pending
from meetcap.client.spool import Spool
from meetcap.gui.pending_dialog import DeliveryTarget, PendingDialog
from tests.client.delivery import stored_pcm
from tests.client.frames import synthetic_frames
from tests.support.server_proc import TOKEN, USER

FAST = dict(backoff_base_s=0.05, backoff_cap_s=0.5, open_timeout_s=2.0)


def _spool_session(root, url: str, token: str, frames: int, seed: int) -> tuple[str, bytes]:
    """A recording left in the spool for ``url`` + ``token`` (never delivered)."""
    spool = Spool.open(root)
    session = spool.new_session(time.time(), url, destination=destination_key(url, token),
                                account=account_fingerprint(url, token))
    pcm = b""
    for frame in synthetic_frames(frames, seed=seed):
        session.append(frame)
        pcm += frame.pcm
    session.close()
    spool.close()
    return session.dir.name, pcm


def _sidecar(data_dir, session_id: str) -> dict:
    return json.loads((data_dir / f"{session_id}.json").read_text())


def test_deliver_discard_and_retry_with_new_credentials(qtbot, meetcap_server, tmp_path):
    root = tmp_path / "spool"
    url = meetcap_server.url
    first, first_pcm = _spool_session(root, url, TOKEN, 30, seed=1)
    second, _ = _spool_session(root, url, TOKEN, 10, seed=2)
    refused, refused_pcm = _spool_session(root, url, "not-a-valid-token", 12, seed=3)
    # A real refusal: the server answers 401 to that token, and the spool keeps why.
    assert not deliver(root, refused, token="not-a-valid-token", timeout_s=10).ok
    assert find_pending(root, refused).state == "refused"
    assert PendingDialog.has_pending(root)
    assert not PendingDialog.has_pending(root, destination_key("ws://elsewhere:1", TOKEN))

    asked: list[str] = []
    dialog = PendingDialog(
        root, lambda rec: DeliveryTarget(url, TOKEN) if rec.account ==
        account_fingerprint(url, TOKEN) else None,
        streamer_options=FAST, timeout_s=30,
    )
    qtbot.addWidget(dialog)
    dialog.show()
    assert [r.local_id for r in dialog.recordings] == [first, second, refused]  # oldest first
    assert dialog.table.rowCount() == 3
    row_text = [dialog.table.item(r, 2).text() for r in range(3)]
    assert any("refused the token" in t for t in row_text), row_text
    finished: list[tuple[str, bool, str]] = []
    progress: list[str] = []
    dialog.operation_finished.connect(lambda i, ok, m: finished.append((i, ok, m)))
    dialog.operation_progress.connect(lambda i, text: progress.append(text))

    # Deliver: runs off the GUI thread (the click returns at once), then the row goes.
    started = time.monotonic()
    dialog.button("deliver", first).click()
    assert time.monotonic() - started < 0.5
    assert first in dialog.busy_ids()
    assert not dialog.button("discard", first).isEnabled()  # one thing at a time per row
    qtbot.waitUntil(lambda: any(i == first for i, *_ in finished), timeout=30_000)
    (_, ok, message), = [f for f in finished if f[0] == first]
    assert ok and "stored" in message, message
    assert "Delivered" in dialog.result_label.text()
    assert progress, "progress was shown while delivering"
    assert first not in {r.local_id for r in dialog.recordings}
    (session_id,) = _stored_ids(meetcap_server.data_dir)
    assert _sidecar(meetcap_server.data_dir, session_id)["user"] == USER
    assert stored_pcm(meetcap_server.data_dir, session_id) == first_pcm

    # Discard asks first; "no" keeps it, "yes" deletes it.
    dialog.confirm_discard = lambda parent, rec: asked.append(rec.local_id) or False
    dialog.button("discard", second).click()
    assert asked == [second] and (root / second).exists()
    dialog.confirm_discard = lambda parent, rec: True
    dialog.button("discard", second).click()
    qtbot.waitUntil(lambda: any(i == second for i, *_ in finished), timeout=10_000)
    assert not (root / second).exists()
    assert "Discarded" in dialog.result_label.text()

    # The refused one: Deliver has no credentials for that account, so the dialog asks;
    # cancelling does nothing. "Retry with new server/token..." re-binds it and delivers.
    dialog.ask_new_credentials = lambda parent, rec: asked.append(f"ask:{rec.local_id}")
    dialog.button("deliver", refused).click()
    assert asked[-1] == f"ask:{refused}" and refused not in dialog.busy_ids()
    dialog.ask_new_credentials = lambda parent, rec: DeliveryTarget(url, TOKEN)
    dialog.button("retry", refused).click()
    qtbot.waitUntil(lambda: any(i == refused for i, *_ in finished), timeout=30_000)
    (_, ok, message), = [f for f in finished if f[0] == refused]
    assert ok, message
    assert dialog.recordings == [] and list_pending(root) == []
    assert dialog.table.rowCount() == 0 and "Nothing waits" in dialog.summary.text()
    stored = {sid: stored_pcm(meetcap_server.data_dir, sid)
              for sid in _stored_ids(meetcap_server.data_dir)}
    assert hashlib.sha256(refused_pcm).hexdigest() in {
        hashlib.sha256(p).hexdigest() for p in stored.values()}
    assert {_sidecar(meetcap_server.data_dir, sid)["user"] for sid in stored} == {USER}
    assert dialog.wait_idle(10)
    assert not PendingDialog.has_pending(root)


def test_a_failed_delivery_says_why_and_keeps_the_recording(qtbot, tmp_path):
    root = tmp_path / "spool"
    url = "ws://127.0.0.1:9/v1/stream"  # nothing listens there
    local_id, _ = _spool_session(root, url, TOKEN, 5, seed=4)
    dialog = PendingDialog(root, lambda rec: DeliveryTarget(url, TOKEN), timeout_s=1.0,
                           streamer_options=FAST)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.operation_finished, timeout=20_000) as blocker:
        dialog.button("deliver", local_id).click()
    _, ok, message = blocker.args
    assert not ok and "stay in the spool" in message, message
    assert "not delivered" in dialog.result_label.text()
    assert [r.local_id for r in dialog.recordings] == [local_id]
    assert dialog.button("deliver", local_id).isEnabled()


def _stored_ids(data_dir) -> list[str]:
    return sorted(p.stem for p in data_dir.glob("*.wav"))
