"""r12's inputs from r10: a clip's frames (the JPEG strip r10 keeps, checked for its shape)
and its audio (decoded again from the video, as r10 keeps no copy, and checked against the
digest r10 recorded)."""
from __future__ import annotations

import numpy as np

from a00_common import cache_dir, probe_cache_path, short_error, video_path
from a00_io import array_digest, read_frames, read_json


def clip_aspect(filename: str) -> float:
    """Width / height of a clip as shown, from r10's probe (1.0 when it has none): what a
    motion crop needs to cut squares of the clip's true pixels from r10's square frames."""
    from a02_motion_crop import display_aspect
    probe = read_json(probe_cache_path(filename)) or {}
    return display_aspect(probe.get("summary") or {})


def load_frames(frames_path: str, frames_per_video: int,
                image_size: int | None) -> tuple[np.ndarray | None, str | None]:
    """r10's frames of one video resized to image_size² (as r10 made them with None: the
    hashes, whose settings do not include the backbones' image size), or (None, why) —
    None, None without frames."""
    import cv2
    if not frames_path:  # r10 could not decode it and already has its failure row
        return None, None
    frames = read_frames(cache_dir() / frames_path)
    if frames is None:
        return None, f"frames file {frames_path} is missing or unreadable: rerun r10"
    if frames.ndim != 4 or frames.shape[0] != frames_per_video or frames.shape[3] != 3 \
            or frames.dtype != np.uint8:
        return None, (f"frames file {frames_path} holds {frames.dtype} {frames.shape}, not "
                      f"({frames_per_video}, size, size, 3) uint8: rerun r10 --force")
    if image_size and frames.shape[1:3] != (image_size, image_size):
        shrinking = frames.shape[1] > image_size
        frames = np.stack([cv2.resize(frame, (image_size, image_size),
                                      interpolation=cv2.INTER_AREA if shrinking
                                      else cv2.INTER_LINEAR) for frame in frames])
    return frames, None


def r10_audio_settings() -> dict:
    """How r10 decoded the audio it measured (its preprocess_settings.json): r12 decodes the
    same samples again, as r10 keeps no copy."""
    saved = (read_json(cache_dir() / "preprocess_settings.json") or {}).get("settings") or {}
    if "AUDIO_SAMPLE_RATE" not in saved:
        raise SystemExit(f"{cache_dir() / 'preprocess_settings.json'} is missing or lacks the "
                         f"audio settings: run r10_preprocess_data.py first")
    return {"sample_rate": int(saved["AUDIO_SAMPLE_RATE"]),
            "max_seconds": float(saved["MAX_AUDIO_SECONDS"]),
            "timeout": float(saved["TIMEOUT_SECONDS"])}


def load_audio(filename: str, audio_digest: str,
               audio: dict) -> tuple[np.ndarray | None, str | None]:
    """The clip's audio as r10 decoded it (16-bit samples), or (None, why): a video whose
    audio no longer has the digest r10 recorded has changed since r10 ran."""
    from a01_video_io import VideoError, decode_audio
    try:
        samples = decode_audio(video_path(filename), audio["sample_rate"], audio["max_seconds"],
                               audio["timeout"])
    except VideoError as error:
        return None, f"audio: {short_error(error)}"
    if array_digest(samples) != audio_digest:
        return None, "audio: the video changed since r10 measured it: rerun r10"
    return samples, None
