"""Video IO room: ffprobe, decoding of the sampled frames only, mono wav extraction.

Every call runs ffmpeg/ffprobe as a subprocess with a timeout, so a truncated or hostile
file can at worst make that subprocess fail or hang until the timeout; the Python process
never crashes with it. (ffmpy's `run` has no timeout, hence plain `subprocess` here.)
Errors are raised as `VideoError` with one line fit for `cache/failures.csv`.
"""
from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np

from a00_common import atomic_path, tool_path


class VideoError(RuntimeError):
    """A video that cannot be probed or decoded; the message is one line."""


def _run(command: list[str], timeout: float, what: str) -> bytes:
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise VideoError(f"{what}: no result within {timeout:.0f} s (timeout)") from None
    if result.returncode != 0:
        lines = [line for line in result.stderr.decode("utf-8", "replace").splitlines()
                 if line.strip()]
        reason = lines[-1].strip() if lines else f"exit code {result.returncode}"
        raise VideoError(f"{what}: {reason[:240]}")
    return result.stdout


def probe_video(path: Path, timeout: float = 30.0) -> dict:
    """ffprobe's JSON (format + streams) of one file."""
    path = Path(path)
    if not path.is_file():
        raise VideoError("file not found in videos/")
    if path.stat().st_size == 0:
        raise VideoError("empty file (0 bytes)")
    output = _run([tool_path("ffprobe"), "-v", "error", "-print_format", "json",
                   "-show_format", "-show_streams", str(path)], timeout, "ffprobe")
    try:
        return json.loads(output.decode("utf-8", "replace"))
    except ValueError:
        raise VideoError("ffprobe printed no readable JSON") from None


def _fraction(text) -> float:
    try:
        value = float(Fraction(str(text)))
    except (ValueError, ZeroDivisionError):
        return float("nan")
    return value if value > 0 else float("nan")


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def summarize_probe(probe: dict) -> dict:
    """The metadata-table fields of one probe; raises VideoError when there is no video."""
    streams = probe.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and not s.get("disposition", {}).get("attached_pic")), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None:
        raise VideoError("no video stream")
    container = probe.get("format", {})
    fps = _fraction(video.get("avg_frame_rate")) if video.get("avg_frame_rate") != "0/0" \
        else float("nan")
    if np.isnan(fps):
        fps = _fraction(video.get("r_frame_rate"))
    duration = _number(video.get("duration"))
    if np.isnan(duration):
        duration = _number(container.get("duration"))
    n_frames = _number(video.get("nb_frames"))
    if np.isnan(n_frames) and not np.isnan(duration) and not np.isnan(fps):
        n_frames = round(duration * fps)
    rotation = 0
    for side_data in video.get("side_data_list", []) or []:
        if "rotation" in side_data:
            rotation = int(_number(side_data["rotation"]) or 0)
    tags = {**container.get("tags", {}), **video.get("tags", {})}
    if "rotate" in tags:
        rotation = int(_number(tags["rotate"]) or 0)
    return {
        "width": int(video.get("width") or 0),
        "height": int(video.get("height") or 0),
        "fps": fps,
        "n_frames": n_frames,
        "duration": duration,
        "codec": video.get("codec_name", ""),
        "pixel_format": video.get("pix_fmt", ""),
        "bit_rate": _number(container.get("bit_rate")),
        "size_bytes": int(_number(container.get("size")) or 0),
        "rotation": rotation,
        "has_audio": audio is not None,
        "audio_codec": audio.get("codec_name", "") if audio else "",
        "audio_sample_rate": _number(audio.get("sample_rate")) if audio else float("nan"),
        "audio_channels": int(audio.get("channels") or 0) if audio else 0,
        "creation_time": tags.get("creation_time", ""),
    }


def sample_times(duration: float, count: int) -> np.ndarray:
    """`count` timestamps at the centres of `count` equal slices of the video."""
    return (np.arange(count) + 0.5) * duration / count


def sample_frame_indices(n_frames: int, count: int) -> np.ndarray:
    """Evenly spaced frame indices (slice centres); repeats when the video is shorter."""
    n_frames = max(int(n_frames), 1)
    return np.minimum(((np.arange(count) + 0.5) * n_frames / count).astype(int), n_frames - 1)


def decode_sampled_frames(path: Path, info: dict, count: int, size: int,
                          timeout: float = 120.0, seek_above_seconds: float = 60.0):
    """The `count` sampled frames, resized to size×size RGB uint8: (frames, size, size, 3).

    Short clips (the camera-trap norm) are decoded in one sequential pass that keeps only
    the selected frame numbers: one decode, no seeking. Long videos are read by seeking to
    each sampled time, so a 10-minute file costs `count` short decodes, not ten minutes,
    and memory stays flat. Returns (frames, number of distinct frames actually decoded).
    """
    duration = info.get("duration", float("nan"))
    n_frames = info.get("n_frames", float("nan"))
    scale = f"scale={size}:{size}:flags=area"
    if not np.isnan(duration) and duration > seek_above_seconds:
        frames = []
        for time in sample_times(duration, count):
            raw = _run([tool_path("ffmpeg"), "-v", "error", "-nostdin", "-ss", f"{time:.3f}",
                        "-i", str(path), "-an", "-frames:v", "1", "-vf", scale,
                        "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
                       timeout, "ffmpeg (seek)")
            if len(raw) >= size * size * 3:
                frames.append(np.frombuffer(raw[:size * size * 3], np.uint8))
        decoded = len(frames)
        raw_frames = np.stack(frames) if frames else np.zeros((0, size * size * 3), np.uint8)
    else:
        if np.isnan(n_frames) or n_frames < 1:
            n_frames = count
        indices = sorted(set(sample_frame_indices(int(n_frames), count).tolist()))
        select = "+".join(f"eq(n\\,{index})" for index in indices)
        raw = _run([tool_path("ffmpeg"), "-v", "error", "-nostdin", "-i", str(path), "-an",
                    "-vf", f"select='{select}',{scale}", "-fps_mode", "passthrough",
                    "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"], timeout, "ffmpeg")
        frame_bytes = size * size * 3
        decoded = len(raw) // frame_bytes
        raw_frames = np.frombuffer(raw[:decoded * frame_bytes], np.uint8).reshape(
            decoded, frame_bytes)
    if decoded == 0:
        raise VideoError("no frame could be decoded")
    # map the requested slots onto the decoded frames (repeats for 1-frame or short videos)
    slots = sample_frame_indices(decoded, count)
    return raw_frames[slots].reshape(count, size, size, 3), decoded


def extract_audio(path: Path, output_path: Path, sample_rate: int, max_seconds: float,
                  timeout: float = 120.0) -> None:
    """First audio stream as mono 16-bit wav at `sample_rate`, at most `max_seconds` long."""
    with atomic_path(output_path) as temporary:
        _run([tool_path("ffmpeg"), "-v", "error", "-nostdin", "-y", "-i", str(path), "-vn",
              "-map", "0:a:0", "-ac", "1", "-ar", str(sample_rate), "-t", str(max_seconds),
              "-acodec", "pcm_s16le", "-f", "wav", str(temporary)], timeout, "ffmpeg (audio)")
        if temporary.stat().st_size <= 44:
            raise VideoError("audio stream decoded to nothing")
