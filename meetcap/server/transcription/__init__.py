"""Live transcription on the server (issue 9): worker processes fed from stored audio.

- config.py: :class:`TranscriptionConfig` (model, language, workers, filters).
- storedaudio.py: reads a session's frames and speech flags back from its files.
- files.py: the ``<id>.transcript.json`` / ``.vtt`` / ``.srt`` files and their lock.
- speech.py: the worker's own Silero VAD over the stored audio (clients need no VAD).
- worker.py: the worker process (one engine each), transcribing what is durable.
- service.py: :class:`TranscriptionService` on the server's loop: the sink that tells
  workers what is stored, restarts crashed workers, and holds each session's finals.
- feed.py: one connection's transcript messages (replay, finals, partials, lag).

The engine and the segmentation are meetcap/transcribe/; nothing here touches storage
or acks: a slow or crashing worker can only make the transcript late.
"""

from meetcap.server.transcription.config import TranscriptionConfig

__all__ = ["TranscriptionConfig"]
