"""The files the recording apps write: the path created (and emptied) when recording starts, as
FreeSWITCH opens the file then; 16-bit PCM WAV written when it stops; and, for RECORD_APPEND, the
samples a file already holds.
"""
from __future__ import annotations

import logging
import os

import numpy as np

log = logging.getLogger('switch_sim.apps')


def write_wav(path: str, samples: np.ndarray, rate: int, channels: int) -> int:
    """Write 16-bit PCM WAV (44-byte header); returns the file size."""
    import soundfile
    data = samples.reshape(-1, channels) if channels > 1 else samples
    soundfile.write(path, data, rate, subtype='PCM_16', format='WAV')
    return os.path.getsize(path)


def prepare_path(path: str) -> None:
    """Create the file empty (and its folder), as recording does when it starts."""
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, 'wb'):
        pass


def existing_samples(path: str, rate: int, channels: int, new: np.ndarray) -> np.ndarray:
    """RECORD_APPEND: what the file already holds (same rate and channels), then `new`."""
    import soundfile
    try:
        old, old_rate = soundfile.read(path, dtype='int16', always_2d=True)
    except Exception:
        return new
    if old_rate != rate or old.shape[1] != channels:
        log.error('append to %s: it is %d Hz x %d, not %d Hz x %d', path, old_rate, old.shape[1], rate, channels)
        return new
    return np.concatenate([old.reshape(-1), new])
