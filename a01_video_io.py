"""Video IO module: probing, decoding of the sampled frames only, the mono audio track.

Everything is read in-process, with no subprocess per video, through PyAV (libavformat,
libavcodec, libswscale): the probe, the audio and the frames, short clips in one pass and
long videos by seeking. Starting an ffprobe or ffmpeg binary per video costs more than
decoding a short clip (EXPERIMENTS.md, "Reading videos"). Of the frames, libavcodec skips
those that are neither sampled nor referred to by another frame (most B-frames; with an
intra-only codec such as MJPEG, every unsampled one), and only the sampled ones are scaled
to RGB, by swscale straight from YUV. Every read is bounded: PyAV's I/O timeout, plus a deadline
checked per packet. r10 runs all of it in worker processes, so a decoder that crashes on a
hostile file costs one worker and becomes that video's failure row. Errors are raised as
`VideoError` with one line fit for `cache/failures.csv`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np



class VideoError(RuntimeError):
    """A video that cannot be probed or decoded; the message is one line."""


def _reason(error: Exception) -> str:
    """PyAV's message without the file name it appends (the failure row names the file)."""
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return " ".join(str(text).split())[:240]


def _open_container(path: Path, timeout: float):
    """The file opened by libavformat; VideoError when it is not there or not a media file."""
    import av
    path = Path(path)
    if not path.is_file():
        raise VideoError("file not found in videos/")
    if path.stat().st_size == 0:
        raise VideoError("empty file (0 bytes)")
    try:
        # the timeout bounds each blocking read, as ffprobe's process timeout did
        return av.open(str(path), timeout=timeout, metadata_errors="replace")
    except (av.FFmpegError, OSError, ValueError, UnicodeError) as error:
        raise VideoError(f"{_reason(error)} (not a video, or truncated)") from None


def _rate_text(rate) -> str:
    return f"{rate.numerator}/{rate.denominator}" if rate else "0/0"


def _stream_record(stream) -> dict:
    """One stream in ffprobe's `-show_streams` layout (the fields summarize_probe reads)."""
    import av
    context = stream.codec_context
    record = {"index": stream.index, "codec_type": stream.type,
              "tags": dict(stream.metadata),
              "disposition": {"attached_pic": int(bool(
                  stream.disposition & av.stream.Disposition.attached_pic))}}
    if context is not None and context.name:
        record["codec_name"] = context.name
    if stream.duration is not None and stream.time_base is not None:
        record["duration"] = f"{float(stream.duration * stream.time_base):.6f}"
    if stream.frames:
        record["nb_frames"] = str(stream.frames)
    if stream.type == "video":
        record["avg_frame_rate"] = _rate_text(stream.average_rate)
        record["r_frame_rate"] = _rate_text(stream.base_rate)
        if context is not None:
            record["width"], record["height"] = context.width, context.height
            if context.format is not None:
                record["pix_fmt"] = context.format.name
    elif stream.type == "audio" and context is not None:
        record["sample_rate"] = str(context.sample_rate)
        record["channels"] = context.layout.nb_channels if context.layout else 0
    return record


def _first_frame_rotation(container, stream, deadline: float, max_packets: int = 64) -> int:
    """The display rotation (degrees) that libavcodec attaches to decoded frames; 0 when the
    first packets give no frame (the frame decoder reports such a stream, not the probe)."""
    import av
    try:
        for count, packet in enumerate(container.demux(stream)):
            _check_deadline(deadline)
            for frame in packet.decode():
                return int(round(frame.rotation or 0))
            if count >= max_packets:
                break
    except (av.FFmpegError, OSError, ValueError):
        pass
    return 0


def probe_video(path: Path, timeout: float = 30.0) -> dict:
    """The container and its streams as libavformat reads them, in ffprobe's JSON layout
    (`-show_format -show_streams`): what ffprobe would print, without its process start."""
    deadline = time.monotonic() + timeout
    path = Path(path)
    with _open_container(path, timeout) as container:
        streams = [_stream_record(stream) for stream in container.streams]
        video = next((stream for stream in container.streams.video), None)
        if video is not None and video.codec_context is not None and video.codec_context.name:
            rotation = _first_frame_rotation(container, video, deadline)
            if rotation:
                streams[video.index]["side_data_list"] = [{"side_data_type": "Display Matrix",
                                                           "rotation": rotation}]
        container_format = {"format_name": container.format.name,
                            "size": str(path.stat().st_size),
                            "nb_streams": len(streams),
                            "tags": dict(container.metadata)}
        if container.duration is not None:
            container_format["duration"] = f"{container.duration / 1e6:.6f}"
        if container.bit_rate:
            container_format["bit_rate"] = str(container.bit_rate)
    return {"streams": streams, "format": container_format}


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


@dataclass
class SampledFrames:
    """The decoded frames of one video and where they come from."""

    frames: np.ndarray      # (count, size, size, 3) uint8 RGB
    indices: np.ndarray     # (count,) frame number shown in each slot
    method: str             # "sequential" (one pass) or "seek" (to each sampled frame)
    frames_read: int = 0    # frames the decoder produced (the skipped ones are not)
    partial: str = ""       # why the clip decoded only in part ("" when it decoded whole)

    @property
    def decoded(self) -> int:
        """Distinct frames behind the slots (fewer than slots for very short clips)."""
        return len(set(self.indices.tolist()))


def decode_sampled_frames(path: Path, count: int, size: int, timeout: float = 120.0,
                          seek_above_seconds: float = 60.0, threads: int = 1,
                          skip_unreferenced: bool = True) -> SampledFrames:
    """The `count` evenly spaced frames of a video, resized (squashed) to size×size RGB.

    Short clips, the camera-trap norm, are read in one sequential pass that stops at the last
    sampled frame. Inter-coded video allows no less than decoding the frames the sampled ones
    are predicted from; with `skip_unreferenced` libavcodec also skips every frame that is
    neither sampled nor referred to by another frame (in x264's clips, 2 of each 3 B-frames),
    decided per packet from its timestamp. The frames kept are those a full decode gives,
    bit for bit. Only they are scaled to RGB, in one swscale pass from YUV with area
    averaging. A slot whose frame is missing (a damaged stream) shows the nearest one. Videos
    longer than `seek_above_seconds` are read by seeking to the keyframe before each sampled
    frame and decoding up to it, in the same container and with the same scaling, so their
    cost is `count` short decodes. Either way memory holds only the kept frames. `threads`:
    decoder threads; 1 is the most work per CPU second, so parallel callers should run one
    decoder per core.
    """
    deadline = time.monotonic() + timeout
    with _open_container(path, timeout) as container:
        stream = _video_stream(container)
        n_frames, duration = _frame_count_and_duration(container, stream)
        long_video = n_frames > 0 and duration > seek_above_seconds \
            and _frame_clock(stream) is not None
        if long_video:
            wanted = sample_frame_indices(n_frames, count)
            seeked = _decode_by_seeking(container, stream, wanted, size, deadline, threads,
                                        skip_unreferenced)
            if seeked is not None:
                kept, shown, read = seeked
                return _sampled_frames(kept, shown, wanted, "seek", read)
        else:
            if n_frames <= 0:  # no frame count in the container: count in a first pass
                n_frames = _count_decoded_frames(path, timeout, deadline)
            wanted = sample_frame_indices(n_frames, count)
            passed = _decode_sequentially(container, stream, wanted, size, deadline, threads,
                                          skip_unreferenced)
    if long_video:
        # its container could not seek to before every target (MPEG-TS has no index, and
        # its seeks land on a later keyframe): one pass, which holds only the kept frames
        with _open_container(path, timeout) as container:
            passed = _decode_sequentially(container, _video_stream(container), wanted, size,
                                          deadline, threads, skip_unreferenced)
    kept, shown, ended_at, read = passed
    partial = ""
    if ended_at is not None and ended_at > 0:
        # The container promised more frames than the stream holds: the samples must be
        # spread over the frames that exist, which a second pass can do.
        wanted = sample_frame_indices(ended_at, count)
        with _open_container(path, timeout) as container:
            kept, shown, _, read_again = _decode_sequentially(
                container, _video_stream(container), wanted, size, deadline, threads,
                skip_unreferenced)
        read += read_again
        # a count estimated from duration x rate (webm, mkv) may miss by a frame or two
        if n_frames - ended_at > max(2, n_frames // 50):
            partial = f"the stream ends at frame {ended_at} of the {n_frames} its header " \
                      f"declares"
    sampled = _sampled_frames(kept, shown, wanted, "sequential", read)
    if partial:
        sampled.partial = f"{partial}; {sampled.decoded} distinct frame(s) fill the {count} slots"
    return sampled


def _sampled_frames(kept: dict, shown: dict, wanted: np.ndarray, method: str,
                    read: int) -> SampledFrames:
    """The slots in order; a slot the decoder did not reach (a stream that ended early, a
    failed seek) takes the nearest frame kept."""
    if not kept:
        raise VideoError("no frame could be decoded")
    numbers = np.array(sorted(kept))
    nearest = np.array([shown[target] if target in shown else
                        numbers[np.abs(numbers - target).argmin()] for target in wanted])
    return SampledFrames(np.stack([kept[number] for number in nearest]), nearest, method, read)


def _video_stream(container):
    stream = next(iter(container.streams.video), None)
    if stream is None or stream.codec_context is None or not stream.codec_context.name:
        raise VideoError("the decoder cannot open it (not a video, or an unsupported codec)")
    return stream


def _frame_count_and_duration(container, stream) -> tuple[int, float]:
    """(frames the container declares or implies, seconds); 0 frames when it says nothing."""
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1e6
    else:
        duration = 0.0
    n_frames = int(stream.frames or 0)
    if n_frames <= 0 and rate > 0 and duration > 0:
        n_frames = int(round(duration * rate))  # webm/mkv headers carry no frame count
    if duration <= 0 and rate > 0:
        duration = n_frames / rate
    return n_frames, duration


class _FrameClock:
    """Frame numbers in display order from timestamps, and timestamps from frame numbers
    (constant frame rate, as the slots assume anyway)."""

    def __init__(self, start: int, frames_per_tick: float):
        self.start, self.frames_per_tick = start, frames_per_tick  # one float product a packet

    def number(self, pts: int) -> int:
        return int(round((pts - self.start) * self.frames_per_tick))

    def timestamp(self, number: int) -> int:
        return self.start + int(round(number / self.frames_per_tick))


def _frame_clock(stream) -> _FrameClock | None:
    """The stream's clock, or None when the stream lacks what it needs. AVI stores no
    presentation times: with B-frames its "pts" follow the decoding order on a doubled
    clock, so its frames are numbered by counting them."""
    rate, time_base, start = (stream.average_rate or stream.guessed_rate, stream.time_base,
                              stream.start_time)
    if not rate or not time_base or start is None or stream.container.format.name == "avi":
        return None
    return _FrameClock(start, float(time_base * rate))


def _nearer(previous, current, target: int):
    """Of the (number, frame) pairs either side of target, the nearer; the later on a tie,
    or when there is no earlier one."""
    if previous is not None and target - previous[0] < current[0] - target:
        return previous
    return current


def _rgb_converter(size: int):
    """frame → (size, size, 3) uint8 RGB, upright: one swscale pass from the decoder's YUV
    with area averaging (its reformatter reused), then the display matrix's quarter turns."""
    from av.video.reformatter import Interpolation, VideoReformatter
    reformatter = VideoReformatter()

    def convert(frame) -> np.ndarray:
        image = reformatter.reformat(frame, width=size, height=size, format="rgb24",
                                     interpolation=Interpolation.AREA).to_ndarray()
        turns = int(round((frame.rotation or 0) / 90)) % 4  # the display matrix, as players
        return np.ascontiguousarray(np.rot90(image, turns)) if turns else image
    return convert


def _set_threads(stream, threads: int) -> None:
    stream.thread_count = max(int(threads), 1)
    if threads > 1:
        stream.thread_type = "AUTO"  # frame threads too: one slice per frame is the norm


def _decode_sequentially(container, stream, wanted: np.ndarray, size: int, deadline: float,
                         threads: int, skip_unreferenced: bool):
    """One pass up to the last wanted frame.

    Returns ({frame number: RGB frame}, {wanted number: number of the frame shown},
    frame count if the stream ended before the last sample, else None, frames decoded)."""
    import av
    targets = sorted(set(int(target) for target in wanted))
    kept, shown = {}, {}
    convert = _rgb_converter(size)

    def show(target: int, number: int, frame) -> None:
        shown[target] = number
        if number not in kept:
            kept[number] = convert(frame)

    _set_threads(stream, threads)
    # Skipping is decided per packet, from its timestamp: a sampled frame is always decoded,
    # any other frame only if libavcodec needs it as a reference. With frame threads the
    # setting would reach the decoder late, so they decode everything.
    skipping = skip_unreferenced and threads <= 1
    clock = _frame_clock(stream) if skipping else None
    context, wanted_numbers = stream.codec_context, set(targets)
    # An intra-only codec (MJPEG, common in camera-trap AVIs) refers to no other frame:
    # its unsampled packets are not even given to the decoder. Its packets are numbered
    # from their timestamps, or by counting the non-empty ones (AVI pads with empty ones).
    intra_only = skipping and context.codec is not None and context.codec.intra_only
    previous, position, counted, packet_number = None, 0, 0, -1
    try:
        for packet in container.demux(stream):
            _check_deadline(deadline)
            if intra_only:
                if packet.size == 0:
                    continue  # no picture (an intra-only decoder holds none back either)
                packet_number = clock.number(packet.pts) if clock is not None and \
                    packet.pts is not None else packet_number + 1
                if packet_number < targets[position]:
                    continue
            elif clock is not None:
                needed = packet.pts is None or clock.number(packet.pts) in wanted_numbers
                context.skip_frame = "DEFAULT" if needed else "NONREF"
            for frame in packet.decode():
                counted += 1
                if intra_only:
                    number = max(packet_number, 0)
                elif clock is None:
                    number = counted - 1
                elif frame.pts is None:
                    number = previous[0] + 1 if previous is not None else 0
                else:
                    number = max(clock.number(frame.pts), 0)
                while position < len(targets) and targets[position] <= number:
                    show(targets[position], *_nearer(previous, (number, frame),
                                                     targets[position]))
                    position += 1
                if position == len(targets):
                    return kept, shown, None, counted
                previous = (number, frame)
    except (av.FFmpegError, OSError):
        pass  # a damaged stream: keep what decoded, as a player would
    if intra_only and packet_number >= 0:
        return kept, shown, packet_number + 1, counted  # the stream ended early
    if previous is None:
        return kept, shown, None, counted
    return kept, shown, previous[0] + 1, counted  # the stream ended before the last targets


def _count_decoded_frames(path: Path, timeout: float, deadline: float) -> int:
    """Frames of a stream whose container declares neither a count nor a duration, by
    decoding it once in a container of its own (such streams, raw H.264 for one, may not
    seek back)."""
    import av
    count = 0
    with _open_container(path, timeout) as container:
        stream = _video_stream(container)
        try:
            for _ in container.decode(stream):
                count += 1
                if count % 256 == 0:
                    _check_deadline(deadline)
        except (av.FFmpegError, OSError):
            pass
    if count == 0:
        raise VideoError("no frame could be decoded")
    return count


def _decode_by_seeking(container, stream, wanted: np.ndarray, size: int, deadline: float,
                       threads: int, skip_unreferenced: bool):
    """Each wanted frame by a seek to the keyframe before it, then decoding up to it.

    Returns ({frame number: RGB frame}, {wanted number: number of the frame shown}, frames
    decoded), or None when a seek to the very start still lands after a target. A target
    whose frame is missing shows the nearer of its neighbours; a target the seek cannot
    reach is left out (the caller gives it the nearest frame kept)."""
    import av
    clock = _frame_clock(stream)
    convert = _rgb_converter(size)
    _set_threads(stream, threads)
    skipping = skip_unreferenced and threads <= 1  # as in the sequential pass
    context = stream.codec_context
    counted = 0

    def reach(target: int, seek_to: int):
        """(the frame shown for target or None, number of the first frame decoded or None)."""
        nonlocal counted
        try:
            container.seek(clock.timestamp(seek_to), stream=stream, backward=True)
        except (av.FFmpegError, OSError):
            return None, None
        previous, first = None, None
        try:
            for packet in container.demux(stream):
                _check_deadline(deadline)
                if skipping:
                    needed = packet.pts is None or clock.number(packet.pts) == target
                    context.skip_frame = "DEFAULT" if needed else "NONREF"
                for frame in packet.decode():
                    counted += 1
                    if frame.pts is None:
                        continue
                    number = clock.number(frame.pts)
                    first = number if first is None else first
                    if number < target:
                        previous = (number, frame)
                        continue
                    return _nearer(previous, (number, frame), target), first
        except (av.FFmpegError, OSError):
            pass  # a damaged stream: keep what decoded, as a player would
        return previous, first  # the stream ended before the target

    kept, shown = {}, {}
    for target in sorted(set(int(target) for target in wanted)):
        _check_deadline(deadline)
        back = 0
        while True:
            landed, first = reach(target, max(target - back, 0))
            # A seek may land on a keyframe after the target (a demuxer that seeks by
            # decoding time, with B-frames; one without an index): seek from further back,
            # and if even the start is too late, seeking cannot be trusted here.
            if first is None or first <= target:
                break
            if target - back <= 0:
                return None
            back = max(4 * back, 8)
        if landed is not None:
            shown[target] = landed[0]
            if landed[0] not in kept:
                kept[landed[0]] = convert(landed[1])
    context.skip_frame = "DEFAULT"
    return kept, shown, counted


def _check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise VideoError("frames: no result within the timeout (timeout)")


def decode_audio(path: Path, sample_rate: int, max_seconds: float,
                 timeout: float = 120.0) -> np.ndarray:
    """First audio stream as mono 16-bit samples (int16) at `sample_rate`, at most
    `max_seconds` long. r10 measures it and r12 decodes it again for its log-mel: at 16 kHz
    a kept copy would cost 32 KB a second of disk, the decode ~1 ms a second of CPU.

    Decoded and resampled in-process (libswresample, as `ffmpeg -ac 1 -ar RATE` does; the
    samples agree with ffmpeg's to ±1 LSB). A track that breaks off keeps what decoded.
    """
    import av
    deadline = time.monotonic() + timeout
    limit = int(round(sample_rate * max_seconds))
    chunks, total = [], 0
    with _open_container(path, timeout) as container:
        if not container.streams.audio:
            raise VideoError("no audio stream")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)

        def resampled():
            for frame in container.decode(container.streams.audio[0]):
                _check_deadline(deadline)
                yield from resampler.resample(frame)
            yield from resampler.resample(None)  # what the resampler still holds

        try:
            for converted in resampled():
                chunks.append(converted.to_ndarray().reshape(-1))
                total += chunks[-1].size
                if total >= limit:
                    break
        except (av.FFmpegError, OSError, ValueError) as error:
            if total == 0:
                raise VideoError(f"audio stream does not decode: {_reason(error)}") from None
    if total == 0:
        raise VideoError("audio stream decoded to nothing")
    return np.concatenate(chunks)[:limit].astype("<i2")
