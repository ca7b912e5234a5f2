"""bench_frame_cache — what storing r10's frames as JPEG costs in disk and in features.

r10 keeps each clip's sampled frames for r11 (camera signatures) and r12 (the backbones).
As raw uint8 they are 147 KB a 224² frame, 2.3 MB a clip. This decodes the frames of the
first LIMIT videos of a data folder exactly as r10 does, encodes them at each JPEG quality
in QUALITIES (a00_io.write_frames, the format r10 writes), and measures per quality:

  kb_per_video      the JPEG strip's size
  psnr_db           pixels after the round trip against the decoded frames
  feature_drift     |f_jpeg − f_raw| / |f_raw| of the backbone's per-frame features
                    (BACKBONE, averaged over frames and videos)
  pooled_cosine     cosine of the clip's mean+max pooled features, JPEG against raw

a noise floor (the same measures for frames changed by at most one grey level), and, for
scale beyond the synthetic demo scenes, the size of 16 frames of scikit-learn's two
sample photographs (natural images, 224² area-resized) at each quality.

Writes  bench/results/frame_cache.csv   one row per quality and image source (appended)
Cost    ~1 minute on 2 CPU cores for 40 videos (the backbone runs on 16 × 40 frames per
        quality).

    python bench/bench_frame_cache.py
    python bench/bench_frame_cache.py --data data/demo --limit 80 --qualities 75,85,90,95
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from a00_common import append_results, load_video_table, parse_config, video_path  # noqa: E402
from a00_io import read_frames, write_frames  # noqa: E402

LIMIT = 40                     # videos (the first ones of the video table)
QUALITIES = (75, 85, 90, 95)   # JPEG qualities compared
BACKBONE = "effnet_lite0"
FRAMES_PER_VIDEO = 16          # as r10's defaults
FRAME_SIZE = 224
RESULTS = PROJECT_ROOT / "bench" / "results" / "frame_cache.csv"


def decoded_clips(limit: int) -> list[np.ndarray]:
    from a01_video_io import VideoError, decode_sampled_frames
    clips = []
    for filename in load_video_table()[0]["filename"].head(limit):
        try:
            clips.append(decode_sampled_frames(video_path(filename), FRAMES_PER_VIDEO,
                                               FRAME_SIZE).frames)
        except VideoError:
            continue
    return clips


def round_trip(frames: np.ndarray, quality: int, folder: Path) -> tuple[np.ndarray, int]:
    path = write_frames(frames, folder / "frames.jpg", quality)
    return read_frames(path), path.stat().st_size


def psnr(first: np.ndarray, second: np.ndarray) -> float:
    error = np.mean((first.astype(np.float64) - second.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(error, 1e-12)))


def pooled(features: np.ndarray) -> np.ndarray:
    return np.concatenate([features.mean(axis=0), features.max(axis=0)])


def drift_and_cosine(encoded: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    drift = np.mean(np.linalg.norm(encoded - reference, axis=1)
                    / np.maximum(np.linalg.norm(reference, axis=1), 1e-9))
    first, second = pooled(encoded), pooled(reference)
    return float(drift), float(first @ second / max(np.linalg.norm(first)
                                                   * np.linalg.norm(second), 1e-9))


def noise_floor(clips, raw, features) -> dict:
    """The same measures for frames changed by at most one grey level (random ±1): what
    any perturbation does to the backbone, the scale against which JPEG's drift reads."""
    generator = np.random.default_rng(0)
    measures, quality_psnr = [], []
    for frames, reference in zip(clips, raw, strict=True):
        noisy = np.clip(frames.astype(np.int16) + generator.integers(-1, 2, frames.shape),
                        0, 255).astype(np.uint8)
        quality_psnr.append(psnr(frames, noisy))
        measures.append(drift_and_cosine(features(noisy), reference))
    return {"source": "data, ±1 grey-level noise", "videos": len(clips), "quality": np.nan,
            "kb_per_video": np.nan, "psnr_db": np.mean(quality_psnr),
            "feature_drift": np.mean([m[0] for m in measures]),
            "pooled_cosine": np.mean([m[1] for m in measures])}


def sample_photo_frames() -> np.ndarray:
    import cv2
    from sklearn.datasets import load_sample_images
    photos = [cv2.resize(image, (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_AREA)
              for image in load_sample_images().images]
    return np.stack([photos[index % len(photos)] for index in range(FRAMES_PER_VIDEO)])


def main() -> None:
    parse_config(globals(), __doc__)
    from a02_backbones import build_frame_encoder
    clips = decoded_clips(LIMIT)
    if not clips:
        raise SystemExit("no video decoded: build the demo data first (r00_make_demo_data.py)")
    encoder = build_frame_encoder(BACKBONE, FRAME_SIZE)

    def features(frames: np.ndarray) -> np.ndarray:
        return np.asarray(encoder.predict(frames.astype(np.float32), batch_size=32,
                                          verbose=0), np.float32)

    raw = [features(frames) for frames in clips]
    photos = sample_photo_frames()
    rows = [noise_floor(clips, raw, features)]
    with tempfile.TemporaryDirectory() as folder:
        for quality in QUALITIES:
            sizes, quality_psnr, drift, cosine = [], [], [], []
            for frames, reference in zip(clips, raw, strict=True):
                restored, size = round_trip(frames, quality, Path(folder))
                sizes.append(size)
                quality_psnr.append(psnr(frames, restored))
                clip_drift, clip_cosine = drift_and_cosine(features(restored), reference)
                drift.append(clip_drift)
                cosine.append(clip_cosine)
            rows.append({"source": "data", "videos": len(clips), "quality": quality,
                         "kb_per_video": np.mean(sizes) / 1024, "psnr_db": np.mean(quality_psnr),
                         "feature_drift": np.mean(drift), "pooled_cosine": np.mean(cosine)})
            restored, size = round_trip(photos, quality, Path(folder))
            rows.append({"source": "sample_photos", "videos": 1, "quality": quality,
                         "kb_per_video": size / 1024, "psnr_db": psnr(photos, restored),
                         "feature_drift": np.nan, "pooled_cosine": np.nan})
    raw_kb = clips[0].nbytes / 1024
    table = pd.DataFrame(rows)
    print(f"raw uint8 frames: {raw_kb:.0f} KB per video")
    print(table.to_string(index=False, float_format=lambda value: f"{value:.4g}"))
    append_results(table.assign(raw_kb_per_video=raw_kb), RESULTS)


if __name__ == "__main__":
    main()
