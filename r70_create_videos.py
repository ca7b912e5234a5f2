"""r70 — copies of chosen videos with the top predicted classes drawn on every frame.

Reads   predictions/ensemble_oof.csv (train videos: the out-of-fold prediction, r60),
        predictions/ensemble_test.csv (test videos, r60), input/train_labels.csv (true labels,
        drawn for train videos), input/submission_format.csv, input/videos/*
Writes  reports/videos/<filename>.mp4    H.264 copy with the overlay: same frames, frame rate
                                         and size (odd sizes padded by one pixel), audio kept
Cost    one decode and one x264 encode per video: about 0.5 s for a 5 s 480×270 clip.

    python r70_create_videos.py                          # automatic pick of COUNT videos
    python r70_create_videos.py --videos 041fr82fbU.mp4,0C1RyLgke9.mp4
    python r70_create_videos.py --split train --count 4 --force
    python r70_create_videos.py --dry_run                # print the pick, write nothing

An optional step for a person to check predictions by eye; not part of the default chain.
The automatic pick takes the train videos the ensemble got most right (lowest per-video log
loss) and most wrong (highest), and random test videos. A video that cannot be read or
encoded is skipped with a one-line reason; the others are still written.
"""
from __future__ import annotations

import subprocess
import tempfile
import threading
from pathlib import Path

import ffmpy
import numpy as np
import pandas as pd

from a00_common import (InputError, SEED, load_submission_format, load_train_labels, logger,
                        parse_config, predictions_dir, progress, reports_dir, run_main, short_error,
                        tool_path, video_path)
from a00_metric import PROBABILITY_CLIP, read_prediction_table
from a00_io import atomic_path, file_identity, up_to_date, write_stamp
from a01_video_io import VideoError, probe_video, summarize_probe

# --- which videos
VIDEOS = ()                    # filenames to render; empty = the automatic pick below
COUNT = 6                      # automatic pick: videos in all
SPLIT = "both"                 # automatic pick from "train", "test" or "both": train gives the
                               # most confident and the most wrong, test gives random videos
PICK_SEED = SEED               # seed of the random test pick
# --- what is drawn
TOP_CLASSES = 3                # classes listed, highest probability first
FONT_SCALE = 0.5               # OpenCV font scale for a 360-pixel-high frame; scales with height
BOX_OPACITY = 0.6              # opacity of the dark box behind the text
# --- encoding
CRF = 20                       # x264 quality (lower = better, bigger)
PRESET = "veryfast"            # x264 speed/size trade-off
THREADS = 2                    # ffmpeg threads per video (0 = ffmpeg decides: every core)
TIMEOUT_SECONDS = 300.0        # per video; a hung ffmpeg is killed and the video skipped

# Audio codecs an MP4 holds as they are; anything else is re-encoded to AAC.
MP4_AUDIO_CODECS = ("aac", "mp3", "ac3", "eac3", "alac", "opus", "flac")
TEXT_COLOUR = (245, 245, 245)         # RGB: frames are decoded as rgb24
MUTED_COLOUR = (190, 196, 204)
TRUE_COLOUR = (130, 225, 130)
BOX_COLOUR = (16, 20, 28)
BAR_COLOURS = {"true": (46, 150, 70), "false": (200, 80, 60), "unknown": (60, 110, 190)}
BAR_OPACITY = 0.85


# ----------------------------------------------------------------------------- choice

def video_log_losses(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean binary log loss of each video (row) over the classes."""
    clipped = np.clip(probabilities, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    return -np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped), axis=1)


def choose_videos(train_names: list[str], train_losses: np.ndarray, test_names: list[str],
                  count: int, split: str, seed: int) -> list[dict]:
    """The automatic pick: [{filename, split, pick}] — most wrong, most confident, random test.

    `train_names`/`train_losses` are the candidate train videos and their per-video OOF log
    loss; `test_names` the candidate test videos. A split without candidates gives its share
    to the other one.
    """
    if split not in ("train", "test", "both"):
        raise ValueError(f"--split must be train, test or both, got {split!r}")
    if split == "test":
        train_count, test_count = 0, min(count, len(test_names))
    elif split == "train":
        train_count, test_count = min(count, len(train_names)), 0
    else:
        test_count = min(count // 3, len(test_names))
        train_count = min(count - test_count, len(train_names))
        test_count = min(count - train_count, len(test_names))
    chosen = []
    order = np.argsort(np.asarray(train_losses, dtype=np.float64), kind="stable")
    wrong_count = train_count - train_count // 2
    wrong = [int(i) for i in order[::-1][:wrong_count]]
    confident = [int(i) for i in order if int(i) not in wrong][:train_count - wrong_count]
    for index in wrong:
        chosen.append({"filename": train_names[index], "split": "train", "pick": "most wrong"})
    for index in confident:
        chosen.append({"filename": train_names[index], "split": "train",
                       "pick": "most confident"})
    if test_count:
        generator = np.random.default_rng(seed)
        for index in sorted(generator.choice(len(test_names), size=test_count, replace=False)):
            chosen.append({"filename": test_names[int(index)], "split": "test",
                           "pick": "random test"})
    return chosen


# ----------------------------------------------------------------------------- overlay

class Overlay:
    """The box with its text, rendered once and blended onto every frame."""

    def __init__(self, lines: list[dict], width: int, height: int):
        import cv2
        font = cv2.FONT_HERSHEY_SIMPLEX
        # below 0.3 Hershey text is unreadable; only a box wider than the frame goes lower
        scale = max(FONT_SCALE * height / 360, 0.3)
        margin = max(2, round(0.02 * min(width, height)))
        texts = [_ascii(line["text"]) for line in lines]
        while True:
            thickness = 2 if scale >= 0.9 else 1
            sizes = [cv2.getTextSize(text, font, scale, thickness)[0] for text in texts]
            text_height = max(size[1] for size in sizes)
            line_height = round(text_height * 1.75) + 1
            padding = max(2, round(line_height * 0.35))
            box_width = max(size[0] for size in sizes) + 2 * padding
            # shrink the font until the box fits the frame's width (small or narrow videos)
            if box_width <= width - 2 * margin or scale <= 0.2:
                break
            scale *= 0.9
        box_width = min(box_width, width - 2 * margin)
        box_height = min(line_height * len(lines) + 2 * padding - (line_height - text_height) // 2,
                         height - 2 * margin)
        canvas = np.empty((box_height, box_width, 3), np.uint8)
        canvas[:] = BOX_COLOUR
        alpha = np.full((box_height, box_width), BOX_OPACITY, np.float32)
        mask = np.zeros((box_height, box_width), np.uint8)
        for index, (line, text) in enumerate(zip(lines, texts, strict=True)):
            baseline_y = padding + text_height + index * line_height
            if line.get("bar") is not None:
                top = baseline_y - text_height - (line_height - text_height) // 3
                bottom = baseline_y + (line_height - text_height) // 3
                right = padding + round(float(line["bar"]) * (box_width - 2 * padding))
                canvas[max(top, 0):bottom, padding:right] = line["bar_colour"]
                alpha[max(top, 0):bottom, padding:right] = BAR_OPACITY
            cv2.putText(canvas, text, (padding, baseline_y), font, scale, line["colour"],
                        thickness, cv2.LINE_AA)
            cv2.putText(mask, text, (padding, baseline_y), font, scale, 255, thickness,
                        cv2.LINE_AA)
        alpha = np.maximum(alpha, mask.astype(np.float32) / 255)[:, :, None]
        self.rows = slice(margin, margin + box_height)
        self.columns = slice(margin, margin + box_width)
        self.weighted_box = canvas.astype(np.float32) * alpha
        self.keep = 1 - alpha

    def apply(self, frame: np.ndarray) -> np.ndarray:
        region = frame[self.rows, self.columns].astype(np.float32)
        frame[self.rows, self.columns] = np.clip(region * self.keep + self.weighted_box + 0.5,
                                                 0, 255).astype(np.uint8)
        return frame


def overlay_lines(choice: dict, probabilities: np.ndarray, classes: list[str],
                  truth: np.ndarray | None, loss: float | None) -> list[dict]:
    """Text lines: the name, the split (and why it was picked), the top classes, the truth."""
    description = "test video" if choice["split"] == "test" else "train video, out-of-fold"
    if choice.get("pick"):
        description += f" - {choice['pick']}"
    if loss is not None:
        description += f" (log loss {loss:.3f})"
    lines = [{"text": choice["filename"], "colour": TEXT_COLOUR},
             {"text": description, "colour": MUTED_COLOUR}]
    for index in np.argsort(-probabilities, kind="stable")[:TOP_CLASSES]:
        if truth is None:
            state = "unknown"
        else:
            state = "true" if truth[index] == 1 else "false"
        lines.append({"text": f"{probabilities[index]:.2f}  {classes[index]}",
                      "colour": TRUE_COLOUR if state == "true" else TEXT_COLOUR,
                      "bar": float(probabilities[index]), "bar_colour": BAR_COLOURS[state]})
    if truth is not None:
        true_classes = [name for name, value in zip(classes, truth, strict=True) if value == 1]
        lines.append({"text": "truth: " + (", ".join(true_classes) or "no class"),
                      "colour": TRUE_COLOUR})
    return lines


def _ascii(text: str) -> str:
    # OpenCV's Hershey fonts draw ASCII only; anything else would come out as '?'-like junk
    return str(text).encode("ascii", "replace").decode("ascii")


# ----------------------------------------------------------------------------- video

def frame_rate_text(probe: dict) -> str:
    """The video stream's frame rate as ffmpeg writes it (e.g. '30000/1001'), 25 if unknown."""
    from fractions import Fraction
    stream = next((s for s in probe.get("streams", []) if s.get("codec_type") == "video"), {})
    for key in ("avg_frame_rate", "r_frame_rate"):
        try:
            rate = Fraction(str(stream.get(key, "")))
        except (ValueError, ZeroDivisionError):
            continue
        if rate > 0:
            return f"{rate.numerator}/{rate.denominator}"
    return "25"


def render_video(source: Path, output: Path, lines: list[dict]) -> int:
    """Writes `output` with the overlay on every frame; returns the number of frames."""
    probe = probe_video(source, TIMEOUT_SECONDS)
    summary = summarize_probe(probe)
    width, height = summary["width"], summary["height"]
    if abs(summary["rotation"]) % 180 == 90:   # ffmpeg turns rotated videos upright
        width, height = height, width
    if width < 16 or height < 16:
        raise VideoError(f"frame size {width}x{height} is too small to draw on")
    overlay = Overlay(lines, width, height)
    audio_codec = "copy" if summary["audio_codec"] in MP4_AUDIO_CODECS else "aac"
    with atomic_path(output) as temporary:
        frames = transcode_with_overlay(source, temporary, width, height, frame_rate_text(probe),
                                        overlay, summary["has_audio"], audio_codec)
    return frames


def transcode_with_overlay(source: Path, target: Path, width: int, height: int, rate: str,
                           overlay: Overlay, has_audio: bool, audio_codec: str) -> int:
    """ffmpeg decodes to raw RGB on one pipe, we draw, a second ffmpeg encodes from another."""
    ffmpeg = tool_path("ffmpeg")
    threads = ["-threads", str(THREADS)]
    decode = ffmpeg_arguments(ffmpy.FFmpeg(
        executable=ffmpeg, global_options=["-v", "error", "-nostdin"],
        inputs={str(source): threads},
        outputs={"pipe:1": ["-map", "0:v:0", "-vf", f"scale={width}:{height}",
                            "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24"]}))
    inputs = {"pipe:0": ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
                         "-framerate", rate]}
    if has_audio:
        inputs[str(source)] = None
        output_options = ["-map", "0:v:0", "-map", "1:a:0", "-c:a", audio_codec]
    else:
        output_options = ["-map", "0:v:0"]
    # x264 with yuv420p needs even sizes: pad odd ones by a pixel rather than scale
    output_options += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264",
                       "-preset", PRESET, "-crf", str(CRF), "-pix_fmt", "yuv420p", *threads,
                       "-movflags", "+faststart", "-f", "mp4"]
    encode = ffmpeg_arguments(ffmpy.FFmpeg(
        executable=ffmpeg, global_options=["-v", "error", "-nostdin", "-y"], inputs=inputs,
        outputs={str(target): output_options}))
    frame_bytes = width * height * 3
    frames = 0
    # stderr goes to files: a chatty decoder must never fill a pipe and stall both processes
    with tempfile.TemporaryFile() as decode_log, tempfile.TemporaryFile() as encode_log:
        decoder = subprocess.Popen(decode, stdout=subprocess.PIPE, stderr=decode_log)
        encoder = subprocess.Popen(encode, stdin=subprocess.PIPE, stderr=encode_log)
        timed_out = threading.Event()

        def stop_both():
            timed_out.set()
            decoder.kill()
            encoder.kill()

        watchdog = threading.Timer(TIMEOUT_SECONDS, stop_both)
        watchdog.start()
        try:
            while True:
                buffer = decoder.stdout.read(frame_bytes)
                if len(buffer) < frame_bytes:
                    break
                frame = np.frombuffer(buffer, np.uint8).reshape(height, width, 3).copy()
                encoder.stdin.write(overlay.apply(frame).tobytes())
                frames += 1
        except (BrokenPipeError, ValueError):
            pass   # the encoder died (or was killed); its log says why, below
        finally:
            for stream in (decoder.stdout, encoder.stdin):
                try:
                    stream.close()
                except OSError:
                    pass
            decoder_code, encoder_code = decoder.wait(), encoder.wait()
            watchdog.cancel()
        if timed_out.is_set():
            raise VideoError(f"ffmpeg: no result within {TIMEOUT_SECONDS:.0f} s (timeout)")
        if decoder_code != 0:
            raise VideoError(f"ffmpeg (decode): {_last_line(decode_log, decoder_code)}")
        if frames == 0:
            raise VideoError("no frame could be decoded")
        if encoder_code != 0:
            raise VideoError(f"ffmpeg (encode): {_last_line(encode_log, encoder_code)}")
    return frames


def ffmpeg_arguments(command: ffmpy.FFmpeg) -> list[str]:
    """The argument list ffmpy built, for Popen: both ffmpegs stream through pipes under a
    watchdog, which ffmpy's run() (the input whole, no timeout) cannot do."""
    # .cmd is Windows-quoted (shlex fails on an apostrophe in a path): the list it joined is exact
    return list(command._cmd)


def _last_line(log, code: int) -> str:
    log.seek(0)
    lines = [line.strip() for line in log.read().decode("utf-8", "replace").splitlines()
             if line.strip()]
    return lines[-1][:240] if lines else f"exit code {code}"


def output_path(filename: str) -> Path:
    """reports/videos/<filename>.mp4, flat (sub-folders become '__'), '.mp4' added if needed."""
    name = filename.replace("/", "__").replace("\\", "__")
    if not name.lower().endswith(".mp4"):
        name += ".mp4"
    return reports_dir() / "videos" / name


# ----------------------------------------------------------------------------- inputs

def read_ensemble_tables(classes: list[str]) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """(ensemble OOF, ensemble test) indexed by filename; a missing table is None."""
    labels_table, _ = load_train_labels(require_rows=False)
    submission = load_submission_format(classes)
    tables = []
    for name, filenames in (("ensemble_oof.csv", labels_table["filename"]),
                            ("ensemble_test.csv", submission["filename"])):
        path = predictions_dir() / name
        if not path.exists():
            logger.warning("r70: %s is missing (r60_ensemble.py writes it): its videos are "
                           "left out", path)
            tables.append(None)
            continue
        try:
            table = read_prediction_table(path, filenames, classes)
        except ValueError as error:
            raise SystemExit(f"r70: {error}; rerun r60_ensemble.py") from None
        tables.append(table.set_index("filename"))
    return tables[0], tables[1]


def main() -> None:
    args = parse_config(globals(), __doc__, extra_options={
        "dry_run": (False, "print the chosen videos and exit without writing any")})
    if SPLIT not in ("train", "test", "both"):
        raise SystemExit(f"r70: --split must be train, test or both, got {SPLIT!r}")
    if COUNT < 0 or TOP_CLASSES < 1:
        raise SystemExit(f"r70: --count must be >= 0 and --top_classes >= 1 (got {COUNT}, "
                         f"{TOP_CLASSES})")
    try:
        tool_path("ffmpeg")
    except RuntimeError as error:
        raise SystemExit(f"r70: {error}") from None
    try:
        labels_table, classes = load_train_labels(require_rows=False)
        oof, test = read_ensemble_tables(classes)
    except InputError as error:
        raise SystemExit(f"r70: {error}") from None
    if oof is None and test is None:
        raise SystemExit("r70: no ensemble predictions in predictions/: run r60_ensemble.py "
                         "first")
    labels = labels_table.set_index("filename")[classes]

    def video_exists(name: str) -> bool:
        try:
            return video_path(name).is_file()
        except InputError:
            return False

    skipped = []
    if VIDEOS:
        choices = []
        for name in VIDEOS:
            if oof is not None and name in oof.index:
                choices.append({"filename": name, "split": "train", "pick": ""})
            elif test is not None and name in test.index:
                choices.append({"filename": name, "split": "test", "pick": ""})
            else:
                skipped.append((name, "not in ensemble_oof.csv or ensemble_test.csv"))
    else:
        train_names = [n for n in oof.index if video_exists(n)] if oof is not None else []
        test_names = [n for n in test.index if video_exists(n)] if test is not None else []
        losses = video_log_losses(oof.loc[train_names, classes].to_numpy(np.float64),
                                  labels.loc[train_names].to_numpy(np.float64)) \
            if train_names else np.zeros(0)
        choices = choose_videos(train_names, losses, test_names, COUNT, SPLIT, PICK_SEED)
    for name, reason in skipped:
        logger.warning("r70: skipped %s: %s", name, reason)
    if args.dry_run:
        for choice in choices:
            print(f"{choice['split']:<6}{choice['pick'] or 'chosen':<16}{choice['filename']}",
                  flush=True)
        return

    written = up_to_date_count = 0
    for choice in progress(choices, desc="r70 videos", unit="video"):
        name = choice["filename"]
        target = output_path(name)
        if choice["split"] == "train":
            probabilities = oof.loc[name, classes].to_numpy(np.float64)
            truth = labels.loc[name].to_numpy(np.float64)
            loss = float(video_log_losses(probabilities[None], truth[None])[0])
        else:
            probabilities, truth, loss = test.loc[name, classes].to_numpy(np.float64), None, None
        try:
            lines = overlay_lines(choice, probabilities, classes, truth, loss)
            # what the clip shows: the text drawn, the video's content, the settings
            inputs = {"lines": lines, "video": (file_identity(video_path(name)) or {}).get(
                "digest"), "settings": args.config}
            if up_to_date(target, inputs, args.force):
                up_to_date_count += 1
                continue
            frames = render_video(video_path(name), target, lines)
            write_stamp(target, inputs)
        except (VideoError, InputError, OSError, ValueError, RuntimeError) as error:
            skipped.append((name, short_error(error)))
            logger.warning("r70: skipped %s: %s", name, short_error(error))
            continue
        written += 1
        logger.info("r70: %s (%s%s) -> %s, %d frames", name, choice["split"],
                    f", {choice['pick']}" if choice["pick"] else "", target, frames)
    logger.info("r70: %d written, %d up to date, %d skipped -> %s", written, up_to_date_count,
                len(skipped), reports_dir() / "videos")


if __name__ == "__main__":
    run_main(main)
