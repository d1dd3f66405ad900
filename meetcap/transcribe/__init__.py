"""Speech to text: the engine (engine.py), streaming segmentation (stream.py), segments
and their filters (segments.py) and transcript file formats (formats.py).

No Qt and no server imports: the server's transcription worker, the offline
``meetcap transcribe`` and the app all build on these modules.
"""
