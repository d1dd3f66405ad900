"""Pure DSP stages of the capture pipeline: numpy, soxr and onnxruntime only.

No threads, no Qt, no sockets, no PortAudio: every stage is a small class with explicit
state that the capture worker drives (see :class:`meetcap.dsp.chain.MixChain`), and that
tests drive with synthetic signals.

    resample  Resampler        device rate, N channels -> 16 kHz mono float32 (soxr)
    gain      Gain             dB gain and mute, ramped
    meter     LevelMeter       peak / RMS dBFS per 100 ms window; count_clips()
    health    HealthTracker    muted / silent / clipping / overrun / lost / stopped
    mixer     Mixer            one timeline, per-source FIFO, drift compensation
    normalize Normalizer       slow AGC + look-ahead limiter
    vad       VadStream        Silero VAD (one shared onnxruntime session)
    framer    Framer           exact 100 ms int16 frames, numbered
    chain     MixChain         all of the above wired together
"""

from meetcap.dsp.chain import MixChain

__all__ = ["MixChain"]
