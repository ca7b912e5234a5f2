"""The cheap per-video features of r12: image hashes with motion and colour statistics of
r10's frames, and the log-mel spectrogram of a clip's audio. Settings come as arguments (r12's
tunables); heavy imports (OpenCV, imagehash, librosa) stay inside the functions."""
from __future__ import annotations

import numpy as np


def hamming_statistics(bits: np.ndarray) -> list[float]:
    """Distances between per-frame hashes: consecutive pairs and all pairs."""
    distances = (bits[:, None, :] != bits[None, :, :]).sum(-1).astype(np.float32)
    consecutive = np.diagonal(distances, offset=1)
    pairs = distances[np.triu_indices(len(bits), k=1)]
    if len(pairs) == 0:
        return [0.0] * 7
    return [consecutive.mean(), consecutive.std(), consecutive.max(), consecutive.min(),
            pairs.mean(), pairs.std(), pairs.max()]


def hash_features(frames: np.ndarray, hash_size: int,
                  motion_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame phash+dhash bits (hash_size² each) and video statistics (hash distances;
    motion on motion_size² grey thumbnails; colour), named by HASH_STATISTIC_NAMES."""
    import cv2
    import imagehash
    from PIL import Image
    bits = []
    for frame in frames:
        image = Image.fromarray(frame)
        phash = imagehash.phash(image, hash_size=hash_size).hash.ravel()
        dhash = imagehash.dhash(image, hash_size=hash_size).hash.ravel()
        bits.append(np.concatenate([phash, dhash]))
    bits = np.asarray(bits, dtype=np.uint8)
    half = hash_size * hash_size
    grey = np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (motion_size, motion_size),
                                interpolation=cv2.INTER_AREA) for f in frames]).astype(np.float32)
    differences = np.abs(np.diff(grey, axis=0)).reshape(len(grey) - 1, -1) \
        if len(grey) > 1 else np.zeros((1, motion_size * motion_size), np.float32)
    motion_per_step = differences.mean(axis=1)
    # pixels that change a lot between frames: a moving animal, not global light drift
    moving_fraction = (differences > 25).mean(axis=1)
    median_frame = np.median(grey, axis=0)
    deviation_from_median = np.abs(grey - median_frame).reshape(len(grey), -1)
    hsv = cv2.cvtColor(frames.reshape(-1, frames.shape[2], 3), cv2.COLOR_RGB2HSV)
    statistics = (
        hamming_statistics(bits[:, :half]) + hamming_statistics(bits[:, half:])
        + [motion_per_step.mean(), motion_per_step.std(), motion_per_step.max(),
           moving_fraction.mean(), moving_fraction.max(),
           deviation_from_median.mean(), deviation_from_median.max(axis=1).mean(),
           (deviation_from_median > 25).mean(axis=1).max(),
           grey.mean(), grey.std(), hsv[..., 1].mean(), hsv[..., 1].std(),
           float(hsv[..., 1].mean() < 8)]  # near-zero saturation: an IR night clip
    )
    return bits, np.asarray(statistics, dtype=np.float32)


HASH_STATISTIC_NAMES = (
    [f"phash_{n}" for n in ("consecutive_mean", "consecutive_std", "consecutive_max",
                            "consecutive_min", "pairs_mean", "pairs_std", "pairs_max")]
    + [f"dhash_{n}" for n in ("consecutive_mean", "consecutive_std", "consecutive_max",
                              "consecutive_min", "pairs_mean", "pairs_std", "pairs_max")]
    + ["motion_mean", "motion_std", "motion_max", "moving_fraction_mean", "moving_fraction_max",
       "median_deviation_mean", "median_deviation_peak_mean", "median_deviation_area_max",
       "brightness_mean", "brightness_std", "saturation_mean", "saturation_std", "is_grey"])


# ----------------------------------------------------------------------------- audio

AUDIO_STATISTIC_NAMES = ("audio_seconds", "audio_rms_mean", "audio_rms_std", "audio_rms_max",
                         "audio_peak", "audio_silent", "audio_zero_crossing_rate")


def as_float(samples: np.ndarray) -> np.ndarray:
    """16-bit samples as float32 in [-1, 1), as a 16-bit wav or FLAC reads."""
    return np.asarray(samples, np.int16).astype(np.float32) / 32768.0


def audio_statistics(samples: np.ndarray, sample_rate: int) -> dict:
    """Loudness statistics of a clip's 16-bit mono samples (r10 records them, r11's
    metadata carries them; the log-mel features are r12's)."""
    samples = as_float(samples)
    if samples.size == 0:
        return {}
    window = max(sample_rate // 20, 1)
    usable = samples[: len(samples) // window * window].reshape(-1, window) \
        if len(samples) >= window else samples.reshape(1, -1)
    rms = np.sqrt(np.mean(usable ** 2, axis=1) + 1e-12)
    signs = np.signbit(samples)
    return {
        "audio_seconds": len(samples) / sample_rate,
        "audio_rms_mean": float(rms.mean()),
        "audio_rms_std": float(rms.std()),
        "audio_rms_max": float(rms.max()),
        "audio_peak": float(np.abs(samples).max()),
        "audio_silent": bool(rms.max() < 1e-4),
        "audio_zero_crossing_rate": float(np.mean(signs[1:] != signs[:-1])),
    }


def logmel_features(samples: np.ndarray, sample_rate: int, n_mels: int, hop_length: int,
                    audio_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(audio_steps, n_mels) log-mel spectrogram of 16-bit mono samples, -100 dB where the
    clip is shorter, and per-band mean/std/max statistics (named by logmel_statistic_names)."""
    import librosa
    samples = as_float(samples)
    if samples.size < hop_length:
        raise ValueError("audio shorter than one spectrogram hop")
    mel = librosa.feature.melspectrogram(y=samples, sr=sample_rate, n_fft=4 * hop_length,
                                         hop_length=hop_length, n_mels=n_mels)
    log_mel = librosa.power_to_db(mel, ref=1.0, top_db=None).T.astype(np.float32)  # (time, mel)
    log_mel = np.maximum(log_mel, -100.0)
    statistics = np.concatenate([log_mel.mean(0), log_mel.std(0), log_mel.max(0),
                                 [log_mel.mean(), log_mel.std(), log_mel.max()]])
    steps = np.full((audio_steps, n_mels), -100.0, np.float32)
    steps[:min(audio_steps, len(log_mel))] = log_mel[:audio_steps]
    return steps, statistics.astype(np.float32)


def logmel_statistic_names(n_mels: int) -> list[str]:
    return ([f"mel{band}_{kind}" for kind in ("mean", "std", "max") for band in range(n_mels)]
            + ["all_mean", "all_std", "all_max"])
