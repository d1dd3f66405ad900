"""Audio devices and capture: which sources exist, and getting their samples off the
audio callback into the pipeline worker without ever blocking the callback.

    devices.py         AudioDevice, list_devices(), find_device(), default_device()
    linux_pulse.py     PulseAudio/PipeWire sources as private ALSA pulse PCMs
    windows_wasapi.py  WASAPI microphones and loopback through PyAudioWPatch
    macos.py           Core Audio inputs; BlackHole-style loopback detection
    portaudio_list.py  devices as PortAudio lists them (macOS, Linux without pactl)
    watcher.py         DeviceWatcher: hot-plug (added / removed devices)
    ringbuffer.py      AudioRing: lock-free single-producer single-consumer ring
    capture.py         one input stream per source into a ring; loss detection
    pipeline.py        CaptureWorker thread: rings -> MixChain -> frames; AudioEvent
    manager.py         AudioManager: the one owner of capture, pub/sub
    filewriter.py      FrameFileWriter: frames to a WAV/FLAC file
"""
