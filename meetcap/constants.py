"""The speech format every part of meetcap agrees on.

Speech APIs want 16 kHz, 16-bit mono PCM in 100 ms packets (see docs/architecture.md):
1,600 samples a frame, 3,200 bytes, 10 frames a second, 32,000 bytes a second.
"""

SAMPLE_RATE_HZ = 16_000
FRAME_MS = 100
FRAME_SAMPLES = SAMPLE_RATE_HZ * FRAME_MS // 1000  # 1,600
SAMPLE_BYTES = 2  # int16 little-endian
FRAME_BYTES = FRAME_SAMPLES * SAMPLE_BYTES  # 3,200
FRAMES_PER_SECOND = 1000 // FRAME_MS  # 10

# The two capture sources, by the names used in settings, levels and the CLI.
SOURCE_MIC = "mic"
SOURCE_SYSTEM = "system"
SOURCE_MIX = "mix"
CAPTURE_SOURCES = (SOURCE_MIC, SOURCE_SYSTEM)
