"""meetcap: capture a meeting's microphone and system audio, mix them into
speech-ready 16 kHz frames and stream them to a meetcap server without loss."""

__version__ = "0.1.0"
