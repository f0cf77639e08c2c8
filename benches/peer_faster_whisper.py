"""The peer for `callwatch bench transcribe`: faster-whisper on the same clips.

Reads a manifest written by the bench command ({"model_dir", "threads", "runs",
"clips": [paths of 16 kHz mono float32 .wav]}), transcribes every clip with
faster-whisper (CTranslate2, int8) the way callwatch does (greedy, English, no
timestamps, no previous-text conditioning, no VAD of its own: the clips are
already cut), and prints one JSON object: best total seconds over the runs and
the texts.
"""

import json
import sys
import time
import wave

import numpy as np
from faster_whisper import WhisperModel


def read_clip(path):
    with wave.open(path, "rb") as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def transcribe_all(model, clips):
    texts = []
    for audio in clips:
        segments, _ = model.transcribe(
            audio,
            language="en",
            beam_size=1,
            temperature=0.0,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        texts.append("".join(s.text for s in segments).strip())
    return texts


def main():
    manifest = json.load(open(sys.argv[1]))
    model = WhisperModel(
        manifest["model_dir"], device="cpu", compute_type="int8", cpu_threads=manifest["threads"], num_workers=1
    )
    clips = [read_clip(p) for p in manifest["clips"]]
    transcribe_all(model, clips[:1])  # warm-up, as the Rust side does
    best, texts = float("inf"), []
    for _ in range(manifest["runs"]):
        start = time.perf_counter()
        texts = transcribe_all(model, clips)
        best = min(best, time.perf_counter() - start)
    json.dump({"seconds": best, "texts": texts}, sys.stdout)


if __name__ == "__main__":
    main()
