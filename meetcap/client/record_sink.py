"""Glue for ``meetcap record --url ... --token ...``: stream what the pipeline frames.

Wiring in the CLI (meetcap/cli/record.py)::

    consumer = StreamingConsumer.open(url, token, tee=file_writer)  # validates, starts
    manager.subscribe(consumer)          # or whatever calls listener(frame) per Frame
    ...                                  # until Ctrl-C / --seconds
    manager.unsubscribe(consumer)
    result = consumer.finish(timeout_s)  # waits for every ack and the server's `ended`
    code, line = describe_finish(result)
    print(line, file=sys.stderr); return code

``tee`` (optional) receives each frame after the streamer accepted it, so a local file
written by it (``--out``) holds exactly the frames that were streamed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from meetcap.client.config import StreamerConfig
from meetcap.client.status import FinishResult
from meetcap.client.streamer import Streamer
from meetcap.frames import Frame

EXIT_OK = 0
EXIT_FRAMES_LEFT = 3  # the server did not confirm everything; the spool keeps the rest


class StreamingConsumer:
    """A frame listener that submits each frame to a :class:`Streamer`.

    Call it (``consumer(frame)`` or ``consumer.on_frame(frame)``) from the pipeline's
    thread. A frame the spool cannot take raises (SpoolFullError / StorageError) and is
    not passed to ``tee``: the caller must stop capture and show the message.
    """

    def __init__(self, streamer: Streamer, tee: Callable[[Frame], None] | None = None) -> None:
        self.streamer = streamer
        self._tee = tee

    @classmethod
    def open(
        cls,
        url: str,
        token: str,
        *,
        spool_dir: Path | None = None,
        tee: Callable[[Frame], None] | None = None,
    ) -> StreamingConsumer:
        """Validate the settings (ConfigError with a clear message) and start streaming."""
        streamer = Streamer(StreamerConfig(url=url, token=token, spool_dir=spool_dir))
        streamer.start()
        return cls(streamer, tee)

    def __call__(self, frame: Frame) -> None:
        self.streamer.submit(frame)
        if self._tee is not None:
            self._tee(frame)

    on_frame = __call__

    def finish(self, timeout_s: float = 30.0) -> FinishResult:
        """End the session and wait for the server to confirm every frame."""
        return self.streamer.finish(timeout_s)


def describe_finish(result: FinishResult) -> tuple[int, str]:
    """The exit code and the one line ``meetcap record`` prints when it is done."""
    lines = [result.message]
    lines += [f"earlier session: {r.message}" for r in result.earlier]
    frames_left = result.frames_left + sum(r.frames_left for r in result.earlier)
    ok = result.ok and all(r.ok for r in result.earlier)
    return (EXIT_OK if ok else EXIT_FRAMES_LEFT), (
        "\n".join(lines) if ok else "\n".join(lines) + f"\n{frames_left} frames left in the spool"
    )
