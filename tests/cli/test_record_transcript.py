"""`meetcap record --url ... --transcript` as a user runs it: espeak-ng speech played into
a real PulseAudio sink, captured by `meetcap record` (a subprocess, no --vad: the server
finds the speech), streamed to a real `meetcap-server --transcribe`; the final segments
are printed as they arrive."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.support.pulse import MIC_ID, MIC_SINK
from tests.support.server_proc import TOKEN
from tests.support.speech import make_speech
from tests.support.transcript_corpus import normalise, wer

SENTENCE = "Please send the meeting notes to the whole group before the end of the day."


def test_record_with_transcript_prints_the_final_segments_as_they_arrive(
    pulse, meetcap_server_factory, tmp_path
):
    server = meetcap_server_factory(transcribe=True)
    speech = make_speech(tmp_path, "notes", SENTENCE, voice="en-us", lead_s=0.5, tail_s=1.5)
    proc = subprocess.Popen(
        [sys.executable, "-m", "meetcap", "record", "--mic", MIC_ID, "--no-system",
         "--seconds", f"{speech.duration_s + 2:.1f}", "--url", server.url, "--token", TOKEN,
         "--data-dir", str(tmp_path / "client"), "--transcript"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    out = []
    for line in proc.stdout:  # levels every 2 s once the device delivers audio
        out.append(line)
        if "dBFS" in line:
            break
    player = pulse.play(speech.path, MIC_SINK)
    rest, stderr = proc.communicate(timeout=120)
    stdout = "".join(out) + rest
    player.wait(timeout=30)
    assert proc.returncode == 0, stderr
    lines = [m.group(1) for m in re.finditer(r"^\[\d\d:\d\d\.\d - \d\d:\d\d\.\d\] (.+)$",
                                             stdout, re.MULTILINE)]
    assert lines, stdout
    printed = " ".join(lines)
    assert wer(SENTENCE, printed) <= 0.25, printed
    # What was printed is the stored transcript, final for final.
    (stored,) = server.data_dir.glob("*.transcript.json")
    segments = json.loads(stored.read_text())["segments"]
    assert [normalise(s["text"]) for s in segments] == [normalise(x) for x in lines]
