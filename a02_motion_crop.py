"""The motion crop: per frame, the region that departs from the clip's median background,
grown by a margin and cut square in the clip's true pixels (r10's frames are squashed to a
square), so that a small animal fills the backbone's input; where nothing moves, the whole
frame, letterboxed. r12's `<backbone>_crop` extractors read it.
"""
from __future__ import annotations

import numpy as np


def display_aspect(summary: dict) -> float:
    """Width / height of a clip as shown (rotation applied), from a probe summary; 1.0 when
    unknown."""
    width, height = summary.get("width") or 0, summary.get("height") or 0
    if not width or not height:
        return 1.0
    if int(summary.get("rotation") or 0) % 180 == 90:
        width, height = height, width
    return float(width) / float(height)


def motion_boxes(frames: np.ndarray, min_difference: float = 20.0,
                 min_area: float = 0.0005) -> list:
    """Per frame, the box (x0, y0, x1, y1) in pixels of the largest region that departs
    from the clip's background (the median of its frames), or None where nothing does.

    A pixel moves when its blurred grey level differs from the background by more than
    `min_difference` and by four noise sigmas (from the median difference); specks under a
    3 × 3 opening are still. The largest connected region is kept (an animal, rather than
    the span from it to a fleck of sunlight across the frame); a frame whose largest region
    is under `min_area` of the frame is still.
    """
    import cv2
    grey = np.stack([cv2.GaussianBlur(frame.mean(axis=2, dtype=np.float32), (5, 5), 0)
                     for frame in frames])
    difference = np.abs(grey - np.median(grey, axis=0))
    threshold = max(min_difference, 4 * 1.4826 * float(np.median(difference)))
    kernel = np.ones((3, 3), np.uint8)
    boxes = []
    for moving in difference > threshold:
        moving = cv2.morphologyEx(moving.astype(np.uint8), cv2.MORPH_OPEN, kernel)
        count, _, stats, _ = cv2.connectedComponentsWithStats(moving, connectivity=8)
        areas = stats[1:, cv2.CC_STAT_AREA]
        if count < 2 or areas.max() < min_area * moving.size:
            boxes.append(None)
            continue
        x, y, width, height = stats[1 + int(np.argmax(areas)), :4]
        boxes.append((int(x), int(y), int(x + width), int(y + height)))
    return boxes


def motion_crop(frames: np.ndarray, aspect: float, margin: float = 0.25,
                min_side: float = 0.25, fill: int = 127) -> np.ndarray:
    """Each frame cropped to what moves in it, at the clip's own aspect ratio.

    `frames`: (T, S, S, 3) uint8, squashed to a square from a clip whose width / height is
    `aspect` (as r10 caches them). Per frame: its motion box (`motion_boxes`), else the
    union of the clip's boxes, else the whole frame; grown by `margin` of its size on each
    side and to a square in the clip's true pixels of at least `min_side` of its shorter
    side; cut out and resized to S × S. Where the square leaves the frame (the whole frame
    of a 16:9 clip, a box at an edge that cannot shift further) it is padded with `fill`
    (mid-grey: zero after the Lite backbones' normalisation), never squashed.
    """
    import cv2
    count, size = frames.shape[0], frames.shape[1]
    boxes = motion_boxes(frames)
    found = [box for box in boxes if box is not None]
    union = (min(b[0] for b in found), min(b[1] for b in found), max(b[2] for b in found),
             max(b[3] for b in found)) if found else None
    width, height = float(aspect), 1.0          # true units: the clip's height is 1
    output = np.empty_like(frames)
    for index in range(count):
        box = boxes[index] or union
        if box is None:   # nothing moves: the whole frame, letterboxed
            side = max(width, height)
            centre_x = centre_y = size / 2
        else:
            x0, y0, x1, y1 = box
            side = max((x1 - x0) * width, (y1 - y0) * height) / size * (1 + 2 * margin)
            side = min(max(side, min_side * min(width, height)), max(width, height))
            centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
        extent_x, extent_y = side / width * size, side / height * size   # squashed pixels
        left = _placed(centre_x - extent_x / 2, extent_x, size)
        top = _placed(centre_y - extent_y / 2, extent_y, size)
        scale_x, scale_y = extent_x / size, extent_y / size
        # output pixel (u, v) samples the frame at (left + (u + ½) scale_x − ½, …)
        matrix = np.array([[scale_x, 0, left + scale_x / 2 - 0.5],
                           [0, scale_y, top + scale_y / 2 - 0.5]], dtype=np.float64)
        output[index] = cv2.warpAffine(frames[index], matrix, (size, size),
                                       flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                       borderMode=cv2.BORDER_CONSTANT,
                                       borderValue=(fill, fill, fill))
    return output


def _placed(start: float, extent: float, size: int) -> float:
    """The start of a window of `extent` moved inside [0, size], or centred when wider."""
    if extent >= size:
        return (size - extent) / 2
    return min(max(start, 0.0), size - extent)
