"""Audio devices and capture: which sources exist, and getting their samples off the
PortAudio callback into the pipeline worker without ever blocking the callback."""
