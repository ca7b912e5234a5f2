"""Tests of the frame-feature stage: sampled-frame decoding (a01), r10's worker isolation,
r12's hashes and statistics, failures, sharded jobs, float16 storage, offline backbones.

Videos are made here with ffmpeg from frames whose pixels spell their own frame number
(16 black-or-white blocks = 16 bits), so a test can read back which frames were decoded.
No test touches the network or times anything.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import a01_video_io as video_io  # noqa: E402
import a02_motion_crop as motion_crop  # noqa: E402
from a00_common import script_tunables  # noqa: E402
from a00_io import read_frames  # noqa: E402
from a02_hash_audio import AUDIO_STATISTIC_NAMES  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="needs ffmpeg and ffprobe")

BITS = 16                     # a 4 × 4 grid of blocks, one bit each
CLASSES = ["bird", "blank"]
TINY = ["--frames_per_video", "4", "--frame_size", "32"]


# ----------------------------------------------------------------------------- helpers

def numbered_frame(number: int, size: int = 64) -> np.ndarray:
    block = size // 4
    bits = [(number >> bit) & 1 for bit in range(BITS)]
    grid = np.array(bits, dtype=np.uint8).reshape(4, 4) * 255
    return np.repeat(np.repeat(grid, block, axis=0), block, axis=1)[..., None].repeat(3, axis=2)


def read_number(frame: np.ndarray) -> int:
    size = frame.shape[0]
    block = size // 4
    grey = frame.astype(np.float32).mean(axis=2)
    # block centres only: the edges of a block are blurred by compression and resizing
    centres = grey[block // 2::block, block // 2::block][:4, :4]
    return int(sum(1 << bit for bit, value in enumerate(centres.ravel()) if value > 127))


def make_numbered_video(path: Path, frame_count: int, fps: int = 10, keyframe_every: int = 25,
                        scale: str | None = None, b_frames: int = 0, mjpeg: bool = False) -> Path:
    """H.264 video whose frame k shows the number k; `scale` enlarges it in ffmpeg;
    `b_frames` > 0 encodes B-frames (x264's pyramid: the middle one of 3 is a reference);
    `mjpeg`: Motion JPEG instead, every frame a picture of its own."""
    command = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", "64x64", "-r", str(fps), "-i", "pipe:0"]
    if scale:
        command += ["-vf", f"scale={scale}:flags=neighbor"]
    if mjpeg:
        command += ["-c:v", "mjpeg", "-q:v", "2", "-pix_fmt", "yuvj444p", str(path)]
    else:
        # x264 makes no B-frames when lossless: those clips are near-lossless instead
        quality = ["-qp", "0"] if not b_frames else ["-crf", "12", "-bf", str(b_frames),
                                                     "-x264-params", "b-adapt=0"]
        command += ["-c:v", "libx264", "-preset", "ultrafast" if not b_frames else "veryfast",
                    *quality, "-g", str(keyframe_every), "-pix_fmt", "yuv444p", str(path)]
    frames = b"".join(numbered_frame(number).tobytes() for number in range(frame_count))
    subprocess.run(command, input=frames, check=True, timeout=120)
    return path


def make_data_folder(root: Path, videos: dict[str, bytes | Path]) -> Path:
    """A data folder in the contract layout; the first video is test, the rest train."""
    folder = root / "input" / "videos"
    folder.mkdir(parents=True)
    for name, content in videos.items():
        if isinstance(content, Path):
            shutil.copy(content, folder / name)
        else:
            (folder / name).write_bytes(content)
    names = list(videos)
    labels = pd.DataFrame({"filename": names[1:]})
    for position, name in enumerate(CLASSES):
        labels[name] = [(row + position) % 2 for row in range(len(labels))]
    labels.to_csv(root / "input" / "train_labels.csv", index=False)
    submission = pd.DataFrame({"filename": names[:1], **{name: 0.5 for name in CLASSES}})
    submission.to_csv(root / "input" / "submission_format.csv", index=False)
    return root


def run_script(script: str, data: Path, *options: str, env: dict | None = None):
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / script), "--data", str(data), *options],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})


def script_module(name: str):
    return importlib.import_module(name)


# ----------------------------------------------------------------------------- decoding

def test_sampled_frames_are_the_evenly_spaced_ones(tmp_path):
    path = make_numbered_video(tmp_path / "numbered.mp4", frame_count=37)
    sampled = video_io.decode_sampled_frames(path, count=8, size=32)
    expected = video_io.sample_frame_indices(37, 8)
    assert sampled.method == "sequential"
    assert sampled.frames.shape == (8, 32, 32, 3) and sampled.frames.dtype == np.uint8
    np.testing.assert_array_equal(sampled.indices, expected)
    assert [read_number(frame) for frame in sampled.frames] == expected.tolist()
    assert sampled.decoded == 8


def decoded_with_and_without_skipping(path: Path, frame_count: int):
    """Both decodes of the video's 8 sampled frames: each shows the right numbers, and the
    one that skips keeps a full decode's frames, bit for bit."""
    expected = video_io.sample_frame_indices(frame_count, 8)
    every = video_io.decode_sampled_frames(path, count=8, size=32, skip_unreferenced=False)
    skipped = video_io.decode_sampled_frames(path, count=8, size=32)
    for sampled in (every, skipped):
        np.testing.assert_array_equal(sampled.indices, expected)
        assert [read_number(frame) for frame in sampled.frames] == expected.tolist()
    np.testing.assert_array_equal(skipped.frames, every.frames)
    assert every.frames_read == expected.max() + 1
    return every, skipped


def test_frames_neither_sampled_nor_referred_to_are_skipped_the_rest_is_exact(tmp_path):
    path = make_numbered_video(tmp_path / "b_frames.mp4", frame_count=60, b_frames=3)
    every, skipped = decoded_with_and_without_skipping(path, 60)
    # fewer decoded frames: 3 B-frames between P-frames, the middle one a reference, leave
    # 2 in 4 frames to skip
    assert skipped.frames_read < 0.75 * every.frames_read


@pytest.mark.parametrize("name, frame_count", [("clip.avi", 60), ("clip.mov", 60),
                                               ("long.avi", 700)])  # 70 s
def test_an_intra_only_codec_decodes_only_the_sampled_packets(tmp_path, name, frame_count):
    # Motion JPEG (camera-trap AVIs): no frame refers to another, so nothing else is decoded
    path = make_numbered_video(tmp_path / name, frame_count=frame_count, mjpeg=True)
    _, skipped = decoded_with_and_without_skipping(path, frame_count)
    assert skipped.frames_read == 8


def test_frames_match_opencv_upright_in_every_pixel_format(tmp_path):
    """OpenCV (BGR, then area resize) is the reference. swscale scales from YUV directly with
    its own area filter, so single pixels at sharp edges differ; 8×8 block means must not:
    they would, by tens, for a wrong orientation, a channel swap, a colour range or a crop."""
    import cv2

    from skimage import data

    photo = np.ascontiguousarray(data.chelsea()[:288, :448])  # a real photo: natural edges
    # 20 frames panning over it, so that the sampled frames differ
    frames = b"".join(np.roll(photo, 4 * step, axis=1).tobytes() for step in range(20))

    def ffmpeg(*arguments, frames_in: bytes | None = None):
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *arguments], check=True,
                       timeout=120, input=frames_in)
    source = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "448x288", "-r", "10", "-i", "pipe:0"]
    ffmpeg(*source, "-c:v", "libx264", "-pix_fmt", "yuv420p", str(tmp_path / "plain.mp4"),
           frames_in=frames)
    ffmpeg("-i", str(tmp_path / "plain.mp4"), "-c", "copy", "-metadata:s:v:0", "rotate=90",
           str(tmp_path / "rotated.mp4"))
    ffmpeg(*source, "-c:v", "libx264", "-pix_fmt", "yuv444p", str(tmp_path / "full_chroma.mp4"),
           frames_in=frames)
    ffmpeg(*source, "-c:v", "libvpx", "-b:v", "2M", str(tmp_path / "vp8.webm"), frames_in=frames)
    ffmpeg(*source, "-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p",
           str(tmp_path / "jpeg.avi"), frames_in=frames)
    for name in ("plain.mp4", "rotated.mp4", "full_chroma.mp4", "vp8.webm", "jpeg.avi"):
        sampled = video_io.decode_sampled_frames(tmp_path / name, count=4, size=48,
                                                 skip_unreferenced=False)
        capture = cv2.VideoCapture(str(tmp_path / name))
        reference = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            reference.append(frame)
        capture.release()
        assert sampled.indices.tolist() == video_io.sample_frame_indices(len(reference),
                                                                         4).tolist(), name
        for index, frame in zip(sampled.indices, sampled.frames):
            expected = cv2.cvtColor(cv2.resize(reference[index], (48, 48),
                                               interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            blocks = [image.astype(float).reshape(6, 8, 6, 8, 3).mean(axis=(1, 3))
                      for image in (frame, expected)]
            assert np.abs(blocks[0] - blocks[1]).max() < 4, name
            assert np.abs(frame.astype(float) - expected).mean() < 3, name


def test_a_clip_shorter_than_the_samples_repeats_its_frames(tmp_path):
    path = make_numbered_video(tmp_path / "short.mp4", frame_count=3)
    sampled = video_io.decode_sampled_frames(path, count=8, size=32)
    numbers = [read_number(frame) for frame in sampled.frames]
    assert numbers == sampled.indices.tolist() == sorted(numbers)
    assert set(numbers) == {0, 1, 2} and sampled.decoded == 3


MEMORY_PROBE = """
import sys
sys.path.insert(0, {root!r})
import av, cv2  # both readers' libraries in both runs: the test is about frames, not imports
from a01_video_io import decode_sampled_frames
sampled = decode_sampled_frames({path!r}, count=8, size=32)
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(sampled.method, int(peak.split()[1]), *sampled.indices.tolist())
"""


def _peak_memory_of_decoding(path: Path) -> tuple[str, int, list[int]]:
    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE.format(root=str(PROJECT_ROOT),
                                                                       path=str(path))],
                            capture_output=True, text=True, timeout=300, check=True)
    method, peak_kilobytes, *indices = result.stdout.split()
    return method, int(peak_kilobytes), [int(index) for index in indices]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_a_long_video_is_read_by_seeking_with_flat_memory(tmp_path):
    # 2 minutes at 10 fps, 320x240: every frame decoded into Python would be 276 MB
    long_path = make_numbered_video(tmp_path / "long.mp4", frame_count=1200, scale="320:240")
    short_path = make_numbered_video(tmp_path / "short.mp4", frame_count=30, scale="320:240")
    method, long_peak, indices = _peak_memory_of_decoding(long_path)
    _, short_peak, _ = _peak_memory_of_decoding(short_path)
    assert method == "seek"
    assert indices == video_io.sample_frame_indices(1200, 8).tolist()
    sampled = video_io.decode_sampled_frames(long_path, count=8, size=32)
    assert [read_number(frame) for frame in sampled.frames] == indices
    assert long_peak - short_peak < 40_000  # kilobytes


@pytest.mark.parametrize("frame_count, count", [
    (700, 8),    # targets inside groups of pictures
    (696, 14)])  # targets 24, 74, 124, ...: each the frame before a keyframe
def test_seeking_gives_a_full_passs_frames_bit_for_bit_for_a_fraction_of_the_decoding(
        tmp_path, frame_count, count):
    # ~70 s at 10 fps, B-frames, a keyframe every 25 frames: over SEEK_ABOVE_SECONDS
    path = make_numbered_video(tmp_path / "long.mp4", frame_count=frame_count, b_frames=3)
    by_seeking = video_io.decode_sampled_frames(path, count=count, size=32,
                                                seek_above_seconds=60)
    in_one_pass = video_io.decode_sampled_frames(path, count=count, size=32,
                                                 seek_above_seconds=1e9)
    assert (by_seeking.method, in_one_pass.method) == ("seek", "sequential")
    wanted = video_io.sample_frame_indices(frame_count, count).tolist()
    assert by_seeking.indices.tolist() == in_one_pass.indices.tolist() == wanted
    assert [read_number(frame) for frame in by_seeking.frames] == wanted
    assert np.array_equal(by_seeking.frames, in_one_pass.frames)
    assert by_seeking.frames_read < in_one_pass.frames_read / 2


def test_a_long_video_whose_container_cannot_seek_before_a_target_is_read_in_one_pass(
        tmp_path):
    # MPEG-TS has no index: a seek to the start lands on the second keyframe (25), after
    # the first target (24)
    mp4 = make_numbered_video(tmp_path / "long.mp4", frame_count=696, b_frames=3)
    ts = tmp_path / "long.ts"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(mp4), "-c", "copy",
                    str(ts)], check=True, timeout=120)
    sampled = video_io.decode_sampled_frames(ts, count=14, size=32, seek_above_seconds=60)
    assert sampled.method == "sequential"
    wanted = video_io.sample_frame_indices(696, 14).tolist()
    assert sampled.indices.tolist() == wanted == [read_number(f) for f in sampled.frames]


def test_avi_with_b_frames_gives_the_sampled_frames_short_or_long(tmp_path):
    # AVI has no presentation times: with B-frames its timestamps follow the decoding
    # order on a doubled clock, and the header counts twice the frames
    mp4 = make_numbered_video(tmp_path / "long.mp4", frame_count=696, b_frames=3)
    avi = tmp_path / "long.avi"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(mp4), "-c", "copy",
                    str(avi)], check=True, timeout=120)
    wanted = video_io.sample_frame_indices(696, 14).tolist()
    for seek_above_seconds in (60, 1e9):
        sampled = video_io.decode_sampled_frames(avi, count=14, size=32,
                                                 seek_above_seconds=seek_above_seconds)
        assert sampled.indices.tolist() == wanted == [read_number(f) for f in sampled.frames]


def test_undecodable_files_raise_one_line_video_errors(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(4096))
    for path in (garbage, tmp_path / "absent.mp4"):
        with pytest.raises(video_io.VideoError) as error:
            video_io.decode_sampled_frames(path, count=4, size=32)
        assert "\n" not in str(error.value)


def ffprobe_summary(path: Path) -> dict:
    output = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format",
                             "-show_streams", str(path)], capture_output=True, check=True,
                            timeout=60).stdout
    return video_io.summarize_probe(json.loads(output))


def test_the_in_process_probe_reads_what_ffprobe_reads(tmp_path):
    source = ["-f", "lavfi", "-i", "testsrc=size=96x64:rate=8"]
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050"]
    h264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p"]
    made = {"plain.mp4": [*source, "-t", "2", *h264],
            "sound.mp4": [*source, *tone, "-t", "2", *h264, "-c:a", "aac", "-shortest",
                          "-metadata", "creation_time=2017-06-01T12:30:00Z"],
            "webm.webm": [*source, "-t", "1", "-c:v", "libvpx-vp9", "-b:v", "100k"]}
    for name, arguments in made.items():
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *arguments,
                        str(tmp_path / name)], check=True, timeout=120)
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(tmp_path / "plain.mp4"),
                    "-c", "copy", "-metadata:s:v:0", "rotate=90",
                    str(tmp_path / "rotated.mp4")], check=True, timeout=120)
    for name in [*made, "rotated.mp4"]:
        mine = video_io.summarize_probe(video_io.probe_video(tmp_path / name))
        reference = ffprobe_summary(tmp_path / name)
        for key, expected in reference.items():
            if isinstance(expected, float):
                assert mine[key] == pytest.approx(expected, rel=1e-3, nan_ok=True), (name, key)
            else:
                assert mine[key] == expected, (name, key)
    sound = video_io.summarize_probe(video_io.probe_video(tmp_path / "sound.mp4"))
    assert sound["has_audio"] and sound["audio_sample_rate"] == 22050
    assert sound["creation_time"].startswith("2017-06-01T12:30:00")
    assert video_io.summarize_probe(video_io.probe_video(tmp_path / "rotated.mp4"))[
        "rotation"] in (90, -90, 270)


def test_the_in_process_audio_matches_ffmpeg_to_one_step(tmp_path):
    import soundfile
    video = tmp_path / "sound.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=64x48:rate=8", "-f", "lavfi", "-i",
                    "sine=frequency=300:sample_rate=44100", "-ac", "2", "-t", "3", "-c:v",
                    "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(video)],
                   check=True, timeout=120)
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(video), "-vn",
                    "-ac", "1", "-ar", "16000", "-t", "2", "-acodec", "pcm_s16le",
                    str(tmp_path / "ffmpeg.wav")], check=True, timeout=120)
    mine = video_io.decode_audio(video, 16000, max_seconds=2.0)
    reference, _ = soundfile.read(tmp_path / "ffmpeg.wav", dtype="int16")
    assert mine.dtype == np.int16 and mine.ndim == 1 and len(mine) == len(reference) == 32000
    assert np.abs(mine.astype(int) - reference).max() <= 1
    assert np.abs(reference).max() > 1000           # a real tone, not silence on both sides
    make_numbered_video(tmp_path / "mute.mp4", frame_count=4)
    with pytest.raises(video_io.VideoError, match="no audio stream"):
        video_io.decode_audio(tmp_path / "mute.mp4", 16000, 2.0)


# ----------------------------------------------------------------------------- hashes

@pytest.fixture(scope="module")
def r12():
    return script_module("r12_extract_features")


def test_identical_frames_have_zero_distances_and_motion(r12):
    frame = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    bits, statistics = r12.hash_features(np.stack([frame] * 5), r12.HASH_SIZE, r12.MOTION_SIZE)
    named = dict(zip(r12.statistic_names("hashes", 0), statistics))
    assert bits.shape == (5, 2 * r12.HASH_SIZE ** 2) and bits.dtype == np.uint8
    for name in ("phash_consecutive_mean", "phash_pairs_max", "dhash_consecutive_max",
                 "motion_mean", "motion_max", "moving_fraction_max", "median_deviation_mean"):
        assert named[name] == 0, name


def test_motion_statistics_by_hand(r12):
    # a 16 × 16 white square jumps from the top-left to the bottom-right corner of a black
    # 64 × 64 frame: on the 32 × 32 motion thumbnail, 2 × 8 × 8 of 1024 pixels change by 255
    first = np.zeros((64, 64, 3), np.uint8)
    second = first.copy()
    first[:16, :16] = 255
    second[-16:, -16:] = 255
    _, statistics = r12.hash_features(np.stack([first, second]), r12.HASH_SIZE,
                                        r12.MOTION_SIZE)
    named = dict(zip(r12.statistic_names("hashes", 0), statistics))
    assert named["moving_fraction_mean"] == pytest.approx(128 / 1024)
    assert named["motion_mean"] == pytest.approx(255 * 128 / 1024)
    assert named["motion_std"] == 0
    assert named["brightness_mean"] == pytest.approx(255 * 64 / 1024)
    assert named["is_grey"] == 1


def test_alternating_black_and_white_frames(r12):
    black, white = np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 255, np.uint8)
    _, statistics = r12.hash_features(np.stack([black, white, black, white]),
                                        r12.HASH_SIZE, r12.MOTION_SIZE)
    named = dict(zip(r12.statistic_names("hashes", 0), statistics))
    assert named["motion_mean"] == named["motion_max"] == 255
    assert named["moving_fraction_mean"] == 1
    assert named["median_deviation_mean"] == pytest.approx(127.5)


# ----------------------------------------------------------------------------- the stage

@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory):
    """r10 on 4 numbered clips and 1 file that is not a video (the test video first)."""
    root = tmp_path_factory.mktemp("stage")
    clips = {f"clip{number}.mp4": make_numbered_video(root / f"source{number}.mp4",
                                                      frame_count=12 + 5 * number)
             for number in range(4)}
    videos = {"clip0.mp4": clips.pop("clip0.mp4"), "broken.mp4": os.urandom(3000), **clips}
    data = make_data_folder(root / "data", videos)
    result = run_script("r10_preprocess_data.py", data, *TINY)
    assert result.returncode == 0, result.stderr
    return data


def test_r10_refuses_a_jpeg_quality_outside_1_to_100(tmp_path):
    result = run_script("r10_preprocess_data.py", tmp_path, "--frame_quality", "101")
    assert result.returncode != 0
    assert "--frame_quality must be a JPEG quality from 1 to 100, got 101" in result.stderr


def test_r10_writes_frames_and_a_failure_row(preprocessed):
    index = pd.read_csv(preprocessed / "cache" / "preprocess_index.csv", dtype=str,
                        keep_default_na=False)
    assert index.columns.tolist() == ["filename", "split", "source_digest", "frames_path",
                                      "frames_digest", "frames_decoded", "audio_digest",
                                      *AUDIO_STATISTIC_NAMES, "errors", "partial",
                                      "frames_config"]
    broken = index.set_index("filename").loc["broken.mp4"]
    assert broken["frames_path"] == "" and broken["errors"]
    failures = pd.read_csv(preprocessed / "cache" / "failures.csv")
    assert failures["filename"].tolist() == ["broken.mp4"]
    clip = index.set_index("filename").loc["clip2.mp4"]
    frames = read_frames(preprocessed / "cache" / clip["frames_path"])
    assert frames.shape == (4, 32, 32, 3) and frames.dtype == np.uint8
    expected = video_io.sample_frame_indices(12 + 5 * 2, 4).tolist()
    assert [read_number(frame) for frame in frames] == expected
    again = run_script("r10_preprocess_data.py", preprocessed, *TINY)
    assert "up to date" in again.stderr


def test_r12_gives_an_undecodable_video_zeros_and_missing(preprocessed, r12, monkeypatch):
    monkeypatch.setenv("TRAPSTACK_DATA", str(preprocessed))
    index = pd.read_csv(preprocessed / "cache" / "preprocess_index.csv", dtype=str,
                        keep_default_na=False)
    for extractor in ("hashes", "random_lite0"):
        monkeypatch.setattr(r12, "IMAGE_SIZE", 32)
        r12.run_extractor(extractor, index, workers=1, force=True)
        folder = preprocessed / "features" / extractor
        table = pd.read_csv(folder / "index.csv")
        assert table.columns.tolist() == ["filename", "split", "row", "missing",
                                          "input_digest", "digest"]
        assert table.set_index("filename")["missing"].to_dict() == {
            "clip0.mp4": 0, "broken.mp4": 1, "clip1.mp4": 0, "clip2.mp4": 0, "clip3.mp4": 0}
        rows = table.set_index("filename")["row"]
        features = np.load(folder / "features.npy")
        statistics = np.load(folder / "statistics.npy")
        assert features.shape[:2] == (5, 4) and statistics.dtype == np.float32
        broken, clip = rows["broken.mp4"], rows["clip0.mp4"]
        assert not features[broken].any() and not statistics[broken].any()
        assert features[clip].any()
        config = json.loads((folder / "config.json").read_text())
        assert config["hash"] and len(config["statistic_names"]) == statistics.shape[1]
    failures = pd.read_csv(preprocessed / "cache" / "failures.csv")
    assert "broken.mp4" in failures["filename"].tolist()


def test_float16_features_match_the_float32_forward_pass(preprocessed, r12, monkeypatch):
    from a02_backbones import build_frame_encoder
    monkeypatch.setenv("TRAPSTACK_DATA", str(preprocessed))
    monkeypatch.setattr(r12, "IMAGE_SIZE", 32)
    index = pd.read_csv(preprocessed / "cache" / "preprocess_index.csv", dtype=str,
                        keep_default_na=False)
    r12.run_extractor("random_lite0", index, workers=2, force=True)
    folder = preprocessed / "features" / "random_lite0"
    features, statistics = np.load(folder / "features.npy"), np.load(folder / "statistics.npy")
    assert features.dtype == np.float16 and statistics.dtype == np.float32
    frames = read_frames(preprocessed / "cache" / index["frames_path"].iloc[2])
    reference = build_frame_encoder("random_lite0", 32).predict(frames.astype(np.float32),
                                                                verbose=0)
    np.testing.assert_allclose(features[2].astype(np.float32), reference, rtol=2e-3, atol=1e-4)
    # the statistics come from the float32 outputs, before rounding
    np.testing.assert_allclose(statistics[2], np.concatenate([reference.mean(0),
                                                              reference.max(0)]),
                               rtol=1e-5, atol=1e-6)
    assert features[2].nbytes == 4 * reference.shape[1] * 2
    assert not (folder / r12.config_hash(r12.extractor_config(
        "random_lite0", index["frames_config"].iloc[0]))).exists()  # shards removed


@pytest.mark.parametrize("extractor", ["hashes", "random_lite0", "random_lite0_crop"])
def test_part_jobs_and_join_equal_a_plain_run(preprocessed, r12, monkeypatch, extractor):
    monkeypatch.setenv("TRAPSTACK_DATA", str(preprocessed))
    monkeypatch.setattr(r12, "IMAGE_SIZE", 32)
    monkeypatch.setattr(r12, "SHARD_SIZE", 2)
    index = pd.read_csv(preprocessed / "cache" / "preprocess_index.csv", dtype=str,
                        keep_default_na=False)
    folder = preprocessed / "features" / extractor
    r12.run_extractor(extractor, index, workers=1, force=True)
    plain = {name: np.load(folder / f"{name}.npy") for name in ("features", "statistics")}
    plain_index = pd.read_csv(folder / "index.csv")
    shutil.rmtree(folder)
    for part in range(2):
        r12.run_extractor(extractor, index, workers=1, force=False, part=part, parts=2)
    shards = sorted(path.name for path in folder.rglob("shard_*.npz"))
    assert shards == ["shard_00000.npz", "shard_00001.npz", "shard_00002.npz"]
    assert not (folder / "features.npy").exists()
    r12.run_extractor(extractor, index, workers=1, force=False)
    for name, values in plain.items():
        np.testing.assert_array_equal(np.load(folder / f"{name}.npy"), values)
    pd.testing.assert_frame_equal(pd.read_csv(folder / "index.csv"), plain_index)
    assert not list(folder.rglob("shard_*.npz"))


def test_a_rerun_reuses_joined_rows(preprocessed, r12, monkeypatch):
    """Shards are deleted after the join: a changed video list still recomputes nothing."""
    monkeypatch.setenv("TRAPSTACK_DATA", str(preprocessed))
    index = pd.read_csv(preprocessed / "cache" / "preprocess_index.csv", dtype=str,
                        keep_default_na=False)
    r12.run_extractor("hashes", index, workers=1, force=True)
    folder = preprocessed / "features" / "hashes"
    before = np.load(folder / "statistics.npy")

    def no_hashing(frames, hash_size, motion_size):
        raise AssertionError("a joined row was computed again")

    monkeypatch.setattr(r12, "hash_features", no_hashing)
    reordered = index.iloc[::-1].reset_index(drop=True)
    r12.run_extractor("hashes", reordered, workers=1, force=False)
    after = pd.read_csv(folder / "index.csv")
    assert after["filename"].tolist() == reordered["filename"].tolist()
    np.testing.assert_array_equal(np.load(folder / "statistics.npy")[::-1], before)


def test_offline_keras_backbone_fails_in_one_line(preprocessed, tmp_path):
    # a proxy that refuses connections: no download, with or without a network
    offline = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
               "KERAS_HOME": str(tmp_path / "keras")}
    result = run_script("r12_extract_features.py", preprocessed, "--extractor", "resnet50",
                        "--image_size", "32", env=offline)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("r12 resnet50: resnet50: its ImageNet weights could not be "
                           "downloaded"), last
    assert "--weights PATH" in last
    unknown = run_script("r12_extract_features.py", preprocessed, "--extractor", "resnet_9000")
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
    assert "unknown extractor 'resnet_9000'" in unknown.stderr.strip().splitlines()[-1]
    missing = run_script("r12_extract_features.py", preprocessed, "--extractor", "vgg16_skip",
                         "--weights", str(tmp_path / "absent.h5"))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "absent.h5: file not found" in missing.stderr.strip().splitlines()[-1]


# ----------------------------------------------------------------------------- isolation

FAILING_WORKER = '''
import os
import time
import r10_preprocess_data as r10


def crash_on_clip2(filename, force, settings):
    """r10's worker function, except that decoding clip2.mp4 kills the process."""
    if filename == "clip2.mp4":
        r10.decode_sampled_frames = lambda *args, **kwargs: os._exit(3)
    return r10.preprocess_safely(filename, force, settings)


def hang_on_clip2(filename, force, settings):
    """r10's worker function, except that decoding clip2.mp4 never returns."""
    if filename == "clip2.mp4":
        r10.decode_sampled_frames = lambda *args, **kwargs: time.sleep(3600)
    return r10.preprocess_safely(filename, force, settings)
'''


def preprocess_with_failing_worker(worker: str, names: list[str], tunables: dict,
                                   preprocessed: Path, tmp_path: Path, monkeypatch):
    """r10's records of `names`, its workers running `worker` of FAILING_WORKER, with
    settings of their own (nothing cached is reused)."""
    r10 = script_module("r10_preprocess_data")
    (tmp_path / "failing_worker.py").write_text(FAILING_WORKER)
    monkeypatch.syspath_prepend(str(tmp_path))
    failing_worker = importlib.import_module("failing_worker")
    monkeypatch.setattr(r10, "preprocess_safely", getattr(failing_worker, worker))
    monkeypatch.setenv("TRAPSTACK_DATA", str(preprocessed))
    settings = {"tunables": {**script_tunables(vars(r10)), **tunables},
                "data": str(preprocessed)}
    records = r10.preprocess_in_workers(names, 2, False, settings, "test")
    assert [record["filename"] for record in records] == names
    return r10, records, settings


def test_a_decoder_crash_costs_one_failure_row_not_the_run(preprocessed, tmp_path,
                                                           monkeypatch):
    names = ["clip0.mp4", "broken.mp4", "clip1.mp4", "clip2.mp4", "clip3.mp4"]
    r10, records, settings = preprocess_with_failing_worker(
        "crash_on_clip2", names, {"FRAMES_PER_VIDEO": 4, "FRAME_SIZE": 24}, preprocessed,
        tmp_path, monkeypatch)
    crashed, broken = records[3], records[1]
    assert crashed["errors"] == ["decode: the decoder crashed on this file "
                                 "(its worker process died)"]
    assert not crashed["frames_path"]
    assert broken["errors"][0].startswith("probe: ") and not broken["frames_path"]
    assert all(record["frames_path"] and not record["errors"]
               for position, record in enumerate(records) if position not in (1, 3))
    assert not r10.output_paths("clip2.mp4", settings["tunables"])["started"].exists()


def test_a_hung_decoder_is_ended_and_costs_one_failure_row(preprocessed, tmp_path,
                                                          monkeypatch):
    names = ["clip0.mp4", "clip1.mp4", "clip2.mp4", "clip3.mp4"]
    r10, records, settings = preprocess_with_failing_worker(
        "hang_on_clip2", names, {"FRAMES_PER_VIDEO": 4, "FRAME_SIZE": 20,
                                 "TIMEOUT_SECONDS": 1.0}, preprocessed, tmp_path, monkeypatch)
    assert records[2]["errors"] == [f"decode: the decoder hung on this file (no result "
                                    f"within {r10.hang_seconds(settings['tunables'])} s)"]
    assert all(record["frames_path"] and not record["errors"]
               for position, record in enumerate(records) if position != 2)
    # the same bytes are not tried again: a rerun takes the recorded failure at once
    started = time.monotonic()
    again = r10.preprocess_in_workers(names, 2, False, settings, "test")
    assert again == records
    assert time.monotonic() - started < r10.hang_seconds(settings["tunables"])


def test_follow_runs_the_backbone_while_r10_decodes(tmp_path, r12, monkeypatch):
    """`r12 --follow` started before r10 waits for its plan and records, and ends with
    what a plain run after r10 gives."""
    videos = {f"clip{number}.mp4": make_numbered_video(tmp_path / f"source{number}.mp4",
                                                       frame_count=10 + 3 * number)
              for number in range(3)}
    videos["broken.mp4"] = os.urandom(2000)
    data = make_data_folder(tmp_path / "data", videos)
    follower = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "r12_extract_features.py"), "--data", str(data),
         "--extractor", "random_lite0", "--image_size", "32", "--follow"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    r10 = run_script("r10_preprocess_data.py", data, *TINY)
    _, errors = follower.communicate(timeout=300)
    assert r10.returncode == 0, r10.stderr
    assert follower.returncode == 0, errors
    folder = data / "features" / "random_lite0"
    followed = {name: np.load(folder / f"{name}.npy") for name in ("features", "statistics")}
    followed_index = pd.read_csv(folder / "index.csv")
    assert followed_index.set_index("filename")["missing"]["broken.mp4"] == 1

    monkeypatch.setenv("TRAPSTACK_DATA", str(data))
    monkeypatch.setattr(r12, "IMAGE_SIZE", 32)
    index = pd.read_csv(data / "cache" / "preprocess_index.csv", dtype=str,
                        keep_default_na=False)
    r12.run_extractor("random_lite0", index, workers=1, force=True)
    pd.testing.assert_frame_equal(pd.read_csv(folder / "index.csv"), followed_index)
    for name, values in followed.items():
        np.testing.assert_allclose(np.load(folder / f"{name}.npy").astype(np.float32),
                                   values.astype(np.float32), rtol=1e-3, atol=1e-5)


# ----------------------------------------------------------------------------- motion crops

def _still_scene(count: int, size: int = 224, seed: int = 0) -> np.ndarray:
    random = np.random.default_rng(seed)
    return (np.full((count, size, size, 3), 90) +
            random.integers(0, 6, (count, size, size, 3))).astype(np.uint8)


def test_a_motion_crop_follows_a_small_moving_animal():
    """A 20-pixel bright square crossing a still, noisy scene: each frame's box is the
    square's own, and in every crop the square fills ~13 % of the picture instead of
    0.8 % of the frame (the box grown by a quarter on each side, to the minimum side of a
    quarter of the frame: 56 pixels, (20 / 56)² of the crop)."""
    frames = _still_scene(8)
    for index in range(8):
        frames[index, 150:170, 20 + 10 * index:40 + 10 * index] = 230
    boxes = motion_crop.motion_boxes(frames)
    assert boxes[0] == (19, 149, 41, 171) and boxes[3] == (49, 149, 71, 171)
    crops = motion_crop.motion_crop(frames, aspect=1.0)
    assert crops.shape == frames.shape and crops.dtype == np.uint8
    bright = (crops.mean(axis=3) > 200).mean(axis=(1, 2))
    assert bright == pytest.approx(np.full(8, (20 / 56) ** 2), abs=0.02)


def test_where_nothing_moves_the_whole_frame_is_letterboxed_not_squashed():
    """A still 16:9 clip (squashed to a square by r10): the crop is the whole frame at 16:9,
    224 × 126 pixels of picture with 49 rows of mid-grey above and below."""
    frames = _still_scene(4)
    frames[:, :, :112] = 40      # left half darker: the picture's content
    crops = motion_crop.motion_crop(frames, aspect=16 / 9)
    rows = crops[0].mean(axis=(1, 2))
    assert (rows[:48] == 127).all() and (rows[-48:] == 127).all()
    assert (rows[50:-50] != 127).all()
    middle = crops[0, 112]
    assert middle[:100].mean() < 50 and middle[124:].mean() > 85   # not mirrored, not cut


def test_the_display_aspect_follows_rotation():
    assert motion_crop.display_aspect({"width": 1920, "height": 1080}) == pytest.approx(16 / 9)
    assert motion_crop.display_aspect({"width": 1920, "height": 1080, "rotation": 90}) == \
        pytest.approx(9 / 16)
    assert motion_crop.display_aspect({}) == 1.0


def test_every_setting_an_extractor_records_is_an_option_of_r12():
    """r80 reproduces a stack's features by passing each extractor's recorded settings back
    to r12 as `--key value`: every recorded setting must be one of r12's tunables."""
    import r12_extract_features as r12
    tunables = {name.lower() for name in vars(r12) if name.isupper()}
    for extractor in (*r12.EXTRACTORS, "effnet_lite0_skip_crop", "effnet_lite2"):
        recorded = set(r12.extractor_config(extractor, "frames")) - {
            "extractor", "frames_config", "hash", "weights", "frames"}
        assert recorded <= tunables, (extractor, recorded - tunables)
