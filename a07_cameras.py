"""Cameras module: which clips come from one camera, when nobody lists the cameras.

A camera is written all over its clips: the same background, framing, frame size, frame
rate and codec. r11 gives every clip without a named camera an inferred one:

- **Hard constraints.** Clips of different frame size, frame rate or codec are never one
  camera.
- **A background signature.** The per-pixel median of a clip's sampled frames (r10's
  cache; a passing animal is mostly gone from it), in grey, divided by its local brightness
  and contrast (an infrared night picture is a day picture with a flash's falloff, another
  gain and more noise), then the magnitude of its gradients (which survive a foliage that
  is dark by day and bright under infrared), pooled to a small grid and normalised. Two
  clips of one place correlate, clips of two places barely do.
- **Clustering.** Average-linkage agglomerative clustering (scikit-learn) of those
  signatures by cosine distance, cut at CAMERA_DISTANCE, within each group of the hard
  constraints.

Clips are placed in an order that keeps r11's contract, that folds depend on the train rows
alone: the train clips first, joining a camera named on train clips when close enough, then
the test clips, joining any camera known by then. A clip never joins a camera of another
size, rate or codec, and a camera the user names always wins.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

SIGNATURE_SIZE = 64            # grey background resized to this square first
SIGNATURE_GRID = 16            # gradient magnitudes pooled to this grid (the signature)
NORMALISE_SIGMA = 4.0          # pixels (of SIGNATURE_SIZE) of the local brightness/contrast
MAX_CLUSTERED = 5000           # clips clustered at once (a 5000² distance matrix is 200 MB)


def background(frames: np.ndarray) -> np.ndarray:
    """The per-pixel median of a clip's frames (uint8, H × W × 3)."""
    return np.median(frames, axis=0).astype(np.uint8)


def signature(frames: np.ndarray) -> np.ndarray:
    """The background signature of one clip: a unit vector of SIGNATURE_GRID² values."""
    import cv2
    # the median of small grey frames: the background, at a fraction of a full median's cost
    grey = np.median([cv2.resize(frame.astype(np.float32).mean(axis=2),
                                 (SIGNATURE_SIZE, SIGNATURE_SIZE), interpolation=cv2.INTER_AREA)
                      for frame in frames], axis=0).astype(np.float32)
    local_mean = cv2.GaussianBlur(grey, (0, 0), NORMALISE_SIGMA)
    centred = grey - local_mean
    local_spread = np.sqrt(cv2.GaussianBlur(centred ** 2, (0, 0), NORMALISE_SIGMA)) + 1.0
    normalised = centred / local_spread
    gradient = np.hypot(cv2.Sobel(normalised, cv2.CV_32F, 1, 0, ksize=3),
                        cv2.Sobel(normalised, cv2.CV_32F, 0, 1, ksize=3))
    pooled = cv2.resize(gradient, (SIGNATURE_GRID, SIGNATURE_GRID),
                        interpolation=cv2.INTER_AREA).ravel().astype(np.float64)
    pooled -= pooled.mean()
    norm = np.linalg.norm(pooled)
    return pooled / norm if norm > 0 else pooled


def cosine_distances(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """1 − cosine similarity between rows of unit vectors."""
    return np.clip(1.0 - first @ second.T, 0.0, 2.0)


def cluster(signatures: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster labels 0..k-1 by average-linkage agglomerative clustering, cut at
    `threshold` (cosine distance). Above MAX_CLUSTERED clips (the distance matrix grows with
    their square), a sample of them is clustered, every other clip joins the sampled cluster
    it is closest to on average if under the threshold, and the clips left are clustered in
    turn the same way."""
    count = len(signatures)
    if count == 1:
        return np.zeros(1, dtype=int)
    if count <= MAX_CLUSTERED:
        from sklearn.cluster import AgglomerativeClustering
        model = AgglomerativeClustering(n_clusters=None, distance_threshold=threshold,
                                        metric="precomputed", linkage="average")
        return model.fit_predict(cosine_distances(signatures, signatures))
    random = np.random.default_rng(0)
    sample = np.sort(random.choice(count, MAX_CLUSTERED, replace=False))
    labels = np.full(count, -1)
    labels[sample] = cluster(signatures[sample], threshold)
    others = np.setdiff1d(np.arange(count), sample)
    names = np.unique(labels[sample])
    distances = np.full((len(others), len(names)), np.inf)
    for start in range(0, len(others), 4096):  # bounded memory: a block of rows at a time
        block = others[start:start + 4096]
        for position, name in enumerate(names):
            members = sample[labels[sample] == name][:200]
            distances[start:start + len(block), position] = \
                cosine_distances(signatures[block], signatures[members]).mean(axis=1)
    nearest = distances.argmin(axis=1)
    close = distances[np.arange(len(others)), nearest] < threshold
    labels[others[close]] = names[nearest[close]]
    rest = others[~close]
    if len(rest):
        labels[rest] = cluster(signatures[rest], threshold) + labels.max() + 1
    return np.unique(labels, return_inverse=True)[1]


def inferred_name(members: list[str]) -> str:
    """A camera's inferred id, from its first member's name: stable whatever clips are
    added elsewhere."""
    first = min(members)
    # 48 bits: two cameras of a large archive never share an id by chance
    return f"inferred-{hashlib.blake2b(first.encode(), digest_size=6).hexdigest()}"


FORMAT_COLUMNS = ["width", "height", "fps", "codec"]


def format_keys(table: pd.DataFrame) -> list[tuple]:
    """(width, height, fps, codec) per row: clips of different keys are never one camera."""
    def number(column):  # a missing value (also "" from a CSV) is a value of its own
        return pd.to_numeric(table[column], errors="coerce").fillna(-1).astype(float)
    return list(zip(number("width"), number("height"), number("fps").round(1),
                    table["codec"].fillna("").astype(str)))


def camera_examples(table: pd.DataFrame, signatures: dict, per_camera: int = 20) -> pd.DataFrame:
    """Up to `per_camera` clips' signatures of every named camera, with its format: what a
    stack carries so that new clips without a camera can join the cameras it was trained
    on (r11 --camera_anchors)."""
    rows = []
    named = table[(table["camera"].fillna("") != "") & table["filename"].isin(signatures)]
    for camera, clips in named.sort_values("filename").groupby("camera"):
        for _, clip in clips.head(per_camera).iterrows():
            rows.append({"camera": camera, **{c: clip[c] for c in FORMAT_COLUMNS},
                         **{f"s{i:03d}": value for i, value
                            in enumerate(signatures[clip["filename"]])}})
    return pd.DataFrame(rows, columns=["camera", *FORMAT_COLUMNS,
                                       *(f"s{i:03d}" for i in range(SIGNATURE_GRID ** 2))])


def infer_cameras(table: pd.DataFrame, signatures: dict, threshold: float,
                  known: pd.DataFrame | None = None) -> pd.DataFrame:
    """camera and camera_source ("given", "inferred", "none") for every row of `table`.

    `table` has filename, split, camera ("" = unknown), width, height, fps, codec;
    `signatures` maps filename -> signature for the clips with frames; `known` (optional,
    `camera_examples`' layout) holds cameras from elsewhere that any clip may join."""
    table = table.reset_index(drop=True)
    camera = table["camera"].fillna("").astype(str).to_numpy(dtype=object)
    source = np.where(camera != "", "given", "none").astype(object)
    keys = format_keys(table)
    outside = {}
    if known is not None and len(known):
        vectors = known[[c for c in known.columns if c.startswith("s")
                         and c[1:].isdigit()]].to_numpy(np.float64)
        for key, name, vector in zip(format_keys(known), known["camera"].astype(str), vectors):
            outside.setdefault(key, {}).setdefault(name, []).append(vector)
    for split_order in (("train",), ("train", "test")):
        # anchors: the cameras known so far, of the splits placed so far
        placed = table["split"].isin(split_order).to_numpy()
        unknown = [row for row in np.flatnonzero(placed & (camera == "") & (source == "none"))
                   if table.at[row, "filename"] in signatures]
        for key in sorted(set(keys[row] for row in unknown), key=str):
            rows = [row for row in unknown if keys[row] == key]
            anchors = {name: list(vectors) for name, vectors in outside.get(key, {}).items()}
            for row in np.flatnonzero(placed & (camera != "")):
                if keys[row] == key and table.at[row, "filename"] in signatures:
                    anchors.setdefault(camera[row], []).append(
                        signatures[table.at[row, "filename"]])
            vectors = np.stack([signatures[table.at[row, "filename"]] for row in rows])
            rest = list(range(len(rows)))
            if anchors:
                names = sorted(anchors)
                distances = np.stack([cosine_distances(vectors, np.stack(anchors[name]))
                                      .mean(axis=1) for name in names], axis=1)
                nearest = distances.argmin(axis=1)
                close = distances[np.arange(len(rows)), nearest] < threshold
                for position in np.flatnonzero(close):
                    camera[rows[position]] = names[nearest[position]]
                    source[rows[position]] = "inferred"
                rest = [position for position in rest if not close[position]]
            if not rest:
                continue
            labels = cluster(vectors[rest], threshold)
            for label in np.unique(labels):
                members = [rows[rest[i]] for i in np.flatnonzero(labels == label)]
                name = inferred_name([table.at[row, "filename"] for row in members])
                for row in members:
                    camera[row], source[row] = name, "inferred"
    return pd.DataFrame({"camera": camera, "camera_source": source})


def adjusted_rand_index(truth, found) -> float:
    from sklearn.metrics import adjusted_rand_score
    return float(adjusted_rand_score(list(truth), list(found)))
