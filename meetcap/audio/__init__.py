"""Audio devices and capture: which sources exist, and getting their samples off the
audio callback into the pipeline worker without ever blocking the callback.

From the bottom up (each imports only from the lines above it; tests/audio/test_layering.py):

    ringbuffer.py      AudioRing: lock-free single-producer single-consumer ring
    base.py            AudioDevice, DeviceKind, Capture, RingCapture (loss detection), BLOCK_MS
    events.py          AudioEvent, AudioEventKind, SOURCE_VAD: what capture reports
    portaudio_list.py  devices as PortAudio lists them (macOS, Linux without pactl)
    linux_pulse.py     PulseAudio/PipeWire sources as private ALSA pulse PCMs
    windows_wasapi.py  WASAPI microphones and loopback through PyAudioWPatch
    macos.py           Core Audio inputs; BlackHole-style loopback detection
    devices.py         list_devices(), find_device(), default_device(): the platform dispatch
    capture.py         make_capture(): one input stream per source into a ring
    watcher.py         DeviceWatcher: hot-plug (added / removed devices)
    pipeline.py        CaptureWorker thread: rings -> MixChain -> frames and events
    manager.py         AudioManager: the one owner of capture, pub/sub
    filewriter.py      FrameFileWriter: frames to a WAV/FLAC file
"""
