"""a08 — the demo's pictures: each camera's scenery, the animals' paths through it, the frames.

r00_make_demo_data.py calls `render_frames` for every clip it planned. A camera's Scene
(forest, ground, trail, near-lens leaves, sun flecks, infrared falloff) is drawn once from
(seed, camera); a clip adds its light, wind, distractors (a falling leaf, moths), sensor
noise, the animals of a08_demo_animals walking, lingering or peeking along planned paths,
the infrared look at night and a date banner on some cameras. Every value comes from the
arguments (the clip's plan, the seed, the settings passed in), never from r00's globals.
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import math

import cv2
import numpy as np

from a08_demo_animals import (SPECIES_BY_NAME, Pen, Species, draw, individual_traits,
                              infrared_traits)

# ----------------------------------------------------------------------------- scenery

def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Value noise in [0, 1] with features about `cell` pixels wide."""
    grid = rng.random((max(2, int(height / cell) + 2), max(2, int(width / cell) + 2)))
    return cv2.resize(grid.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)


def fractal_noise(rng: np.random.Generator, height: int, width: int, largest: float,
                  octaves: int = 4) -> np.ndarray:
    total = np.zeros((height, width), np.float32)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        total += amplitude * smooth_noise(rng, height, width, max(1.5, largest / 2 ** octave))
        norm += amplitude
        amplitude *= 0.5
    return np.clip(total / norm, 0, 1)


@dataclasses.dataclass
class Scene:
    """One camera's fixed view: scenery, near-lens leaves, light patterns, infrared falloff."""
    width: int
    height: int
    fps: int
    horizon: int               # y where the ground meets the forest
    background: np.ndarray     # float32 (H, W, 3), daylight colours
    leaves: np.ndarray         # float32 (h, w, 3) near-lens foliage in its box
    leaves_alpha: np.ndarray   # float32 (h, w) its opacity
    leaves_box: tuple          # (y0, y1, x0, x1) of the foliage in the frame
    flecks: np.ndarray         # float32 low-resolution sun-fleck pattern, larger than the frame
    infrared_gain: np.ndarray  # float32 (H, W): flash falloff, bright centre
    noise_level: float         # sensor noise sigma (grey levels) by day


def draw_trunk(rng, image, x, width, top, bottom, colour):
    """A tree trunk with vertical bark streaks and cylinder shading."""
    height = bottom - top
    x0, x1 = int(max(0, x - width / 2)), int(min(image.shape[1], x + width / 2))
    if x1 <= x0 or height <= 0:
        return
    columns = x1 - x0
    bark = cv2.resize(rng.random((max(2, height // 24), max(2, columns // 3))).astype(np.float32),
                      (columns, height), interpolation=cv2.INTER_LINEAR)
    across = np.linspace(-1, 1, columns, dtype=np.float32)
    shading = 0.55 + 0.45 * np.sqrt(np.clip(1 - across ** 2, 0, 1))
    texture = (0.75 + 0.5 * bark) * shading[None, :]
    image[top:bottom, x0:x1] = np.asarray(colour, np.float32) * texture[..., None]


@functools.lru_cache(maxsize=None)
def build_scene(seed: int, camera: int, width: int, height: int, fps: int) -> Scene:
    """The view of one camera; cached per worker, identical in every process."""
    rng = np.random.default_rng([seed, 3, camera])
    horizon = int(height * rng.uniform(0.38, 0.55))
    image = np.zeros((height, width, 3), np.float32)

    # Forest wall above the horizon: dark greens, with bright canopy gaps.
    forest_palettes = [(40, 70, 35), (55, 75, 40), (35, 60, 50), (70, 80, 45)]
    forest = np.asarray(forest_palettes[rng.integers(len(forest_palettes))], np.float32)
    texture = fractal_noise(rng, height, width, width / 6)
    image[:] = forest * (0.45 + 1.0 * texture[..., None])
    gaps = np.clip((smooth_noise(rng, height, width, width / 10) - 0.78) * 6, 0, 1)
    gaps *= np.linspace(1, 0, height, dtype=np.float32)[:, None] ** 2  # gaps are high up
    image = image * (1 - gaps[..., None]) + np.float32(235) * gaps[..., None]

    # Trunks behind the ground line, wider when nearer.
    for _ in range(int(rng.integers(2, 6))):
        near = rng.random()
        trunk_width = width * (0.02 + 0.12 * near ** 2)
        base = int(horizon + (height - horizon) * 0.25 * near)
        bark_colour = np.array([95, 80, 65]) * rng.uniform(0.6, 1.2) + rng.normal(0, 8, 3)
        draw_trunk(rng, image, rng.uniform(0, width), trunk_width, 0, base, bark_colour)

    # Ground: leaf litter, finer and brighter towards the camera, with an animal trail.
    rows = height - horizon
    ground_colour = np.asarray([(110, 85, 55), (95, 80, 60), (120, 95, 60), (85, 75, 50)]
                               [rng.integers(4)], np.float32)
    litter = fractal_noise(rng, rows, width, width / 10)
    fine = smooth_noise(rng, rows, width, 3)
    depth = np.linspace(0, 1, rows, dtype=np.float32)[:, None]  # 0 at horizon, 1 at bottom
    ground = ground_colour * (0.55 + 0.5 * litter[..., None] + 0.35 * (fine[..., None] - 0.5)
                              * depth[..., None]) * (0.75 + 0.35 * depth[..., None])
    trail_centre = rng.uniform(0.2, 0.8) * width + (np.arange(rows) - rows / 2) * rng.uniform(-1, 1)
    trail_width = width * 0.05 + depth[:, 0] * width * rng.uniform(0.1, 0.3)
    columns = np.arange(width, dtype=np.float32)[None, :]
    trail = np.clip(1 - np.abs(columns - trail_centre[:, None]) / trail_width[:, None], 0, 1)
    ground *= (1 + 0.25 * trail[..., None])
    image[horizon:] = ground

    # Low bushes along the horizon.
    for _ in range(int(rng.integers(4, 10))):
        centre = (int(rng.uniform(0, width)), int(horizon + rng.uniform(-0.02, 0.06) * height))
        axes = (int(width * rng.uniform(0.03, 0.1)), int(height * rng.uniform(0.03, 0.08)))
        colour = tuple(float(c) for c in forest * rng.uniform(0.8, 1.6))
        cv2.ellipse(image, centre, axes, 0, 180, 360, colour, -1, cv2.LINE_AA)

    tint = rng.uniform(0.92, 1.08, 3).astype(np.float32)  # each camera's white balance
    background = cv2.GaussianBlur(image * tint, (0, 0), 0.8)

    # Out-of-focus leaves near the lens hanging into one top corner; they sway in the wind.
    box_height = int(height * rng.uniform(0.3, 0.55))
    box_width = int(width * rng.uniform(0.25, 0.45))
    leaves_mask = np.zeros((box_height, box_width), np.float32)
    leaves_colour = np.zeros((box_height, box_width, 3), np.float32)
    leaf_green = np.array([45, 85, 35], np.float32) * rng.uniform(0.7, 1.3)
    for _ in range(int(rng.integers(6, 14))):
        centre = (int(rng.uniform(0, box_width)), int(rng.uniform(0, box_height * 0.7)))
        axes = (int(box_width * rng.uniform(0.08, 0.2)), int(box_height * rng.uniform(0.04, 0.1)))
        angle = rng.uniform(0, 180)
        shade = tuple(float(c) for c in leaf_green * rng.uniform(0.6, 1.4))
        cv2.ellipse(leaves_mask, centre, axes, angle, 0, 360, 1.0, -1, cv2.LINE_AA)
        cv2.ellipse(leaves_colour, centre, axes, angle, 0, 360, shade, -1, cv2.LINE_AA)
    leaves_mask = cv2.GaussianBlur(leaves_mask, (0, 0), max(1.0, width / 160)) * 0.95
    leaves_colour = cv2.GaussianBlur(leaves_colour, (0, 0), max(1.0, width / 160))
    if rng.random() < 0.5:  # right-hand corner: mirror the box
        leaves_mask, leaves_colour = leaves_mask[:, ::-1].copy(), leaves_colour[:, ::-1].copy()
        box = (0, box_height, width - box_width, width)
    else:
        box = (0, box_height, 0, box_width)

    flecks_low = smooth_noise(rng, height // 4 + 16, width // 4 + 16, width / 40)
    flecks = np.clip((flecks_low - 0.55) * 5, 0, 1).astype(np.float32)

    rows_grid, columns_grid = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = np.hypot((columns_grid - width / 2) / (width / 2),
                      (rows_grid - height * 0.6) / (height * 0.75))
    infrared_gain = (1.45 * np.exp(-1.3 * radius ** 2) + 0.12).astype(np.float32)
    return Scene(width, height, fps, horizon, background.astype(np.float32), leaves_colour,
                 leaves_mask, box, flecks, infrared_gain, float(rng.uniform(1.5, 3.5)))


# ----------------------------------------------------------------------------- motion

def ground_line(scene: Scene, depth: np.ndarray) -> np.ndarray:
    """y of the feet at a depth: 0 = at the lens (feet below the frame), 1 = at the horizon."""
    bottom = scene.height * 1.1
    return scene.horizon + (bottom - scene.horizon) * (1 - depth) ** 1.4 + 0.02 * scene.height


def perspective(depth: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + 2.5 * np.clip(depth, -0.25, None))


def unit_pixels(species: Species, traits: dict, scene: Scene, depth) -> np.ndarray:
    """Pixels per body unit at a depth, so the standing height matches species.height."""
    standing_units = 1.0 if species.body_plan == "upright" else species.leg + 1.0 + 0.3
    if species.body_plan == "bird":
        standing_units = 1.95
    return species.height * traits["size"] * scene.height * perspective(depth) / standing_units


def extent_units(species: Species) -> tuple[float, float]:
    """(half width, height) of an animal's bounding box in its body units."""
    if species.body_plan == "upright":
        return 0.25, 1.0
    if species.body_plan == "bird":
        return 1.2, 1.95
    half_width = species.length / 2 + species.head + 0.3
    return half_width, species.leg + 1.0 + max(0.3, species.head_rise + species.head)


def plan_path(rng: np.random.Generator, species: Species, traits: dict, scene: Scene,
              times: np.ndarray, lead: dict | None = None, reach: float = 1.0) -> dict:
    """Per-frame x, depth, facing, gait phase and pose of one animal through the clip.

    Modes: "cross" walks from one side to the other (the clip may catch only the start or
    the end of it), "linger" feeds or sits around one spot, "glimpse" comes close to the
    lens at an edge and backs out. A follower (`lead` given) walks the leader's path later.
    """
    n, fps = len(times), scene.fps
    duration = n / fps
    flying = (species.body_plan == "bird" and traits.get("variant") == "small bird"
              and rng.random() < 0.7)
    sitting = False
    if lead is not None:
        lead["members"] += 1
        delay = rng.uniform(0.5, 1.6) * lead["members"]
        mode = lead["mode"]
        depth = np.clip(lead["depth"] + rng.uniform(-0.12, 0.12), -0.2, 1.0)
        x = np.interp(times - delay, lead["times_ext"], lead["x_ext"])
        if mode == "linger":
            x = x + rng.uniform(-0.2, 0.2) * scene.width
            sitting = lead["sitting"] and rng.random() < 0.7
    else:
        mode = str(rng.choice(["cross", "linger", "glimpse"], p=[0.55, 0.3, 0.15]))
        if species.name == "elephant":  # too big to peek in from an edge
            mode = str(rng.choice(["cross", "linger"], p=[0.7, 0.3]))
        if flying:
            mode = "cross"
        # Small animals trigger the sensor only when close, so they are never far off.
        farthest = 0.9 * reach * float(np.clip(species.height / 0.3, 0.45, 1.0))
        depth0 = rng.uniform(-0.15, 0.2) if mode == "glimpse" else rng.uniform(0.03, farthest)
        depth = np.clip(depth0 + np.linspace(0, rng.uniform(-0.3, 0.3), n), -0.2, 1.0)
        half_width = extent_units(species)[0] * unit_pixels(species, traits, scene, depth)
        speed = species.speed * scene.width * rng.uniform(0.7, 1.4) * perspective(depth)
        if flying:
            speed = speed * 4
        direction = float(rng.choice([-1.0, 1.0]))
        if mode == "linger":
            centre = rng.uniform(0.15, 0.85) * scene.width
            amplitude = rng.uniform(0.02, 0.12) * scene.width * perspective(depth)
            sitting = "primate" in species.features and rng.random() < 0.6
            if sitting:
                amplitude = amplitude * 0.1
            period, phase = rng.uniform(3, 9), rng.uniform(0, 6.3)
            x = centre + amplitude * np.sin(2 * np.pi * times / period + phase)
        elif mode == "glimpse":
            dwell = rng.uniform(0.8, 2.5)
            inside = np.clip(1 - np.abs(times - rng.uniform(0.2, 0.8) * duration) / dwell, 0, 1)
            penetration = rng.uniform(0.15, 0.4) * scene.width
            edge = -half_width if direction > 0 else scene.width + half_width
            x = edge + direction * (penetration + half_width) * np.sin(inside * np.pi / 2)
        else:
            pace = np.ones(n)
            if species.pauses and rng.random() < 0.6:  # stops to look around or feed
                stop = rng.uniform(0, duration)
                pace[(times > stop) & (times < stop + rng.uniform(0.5, 2.5))] = 0.0
                pace = np.convolve(pace, np.ones(5) / 5, mode="same")
            step = speed * pace / fps
            distance = np.cumsum(step) - step[0]  # 0 at the first frame
            margin = float(half_width.max())
            # How far along its path from edge to edge the animal is when recording starts.
            start = rng.uniform(-distance[-1], scene.width + 2 * margin)
            along = start + distance
            x = -margin + along if direction > 0 else scene.width + margin - along
    velocity = np.gradient(x) * fps if n > 1 else np.zeros(n)
    unit = unit_pixels(species, traits, scene, depth)
    facing = np.sign(velocity)
    facing[facing == 0] = rng.choice([-1.0, 1.0])
    facing = _steady_facing(facing, np.abs(velocity) > 0.02 * scene.width)
    stride_pixels = 1.4 * max(species.leg, 0.4) * unit
    phase = np.cumsum(np.abs(velocity) / fps / stride_pixels) * 2 * np.pi + rng.uniform(0, 6.3)
    moving = np.clip(np.abs(velocity) / (0.03 * scene.width * perspective(depth) + 1e-6), 0, 1)
    graze = 0.25 * (moving < 0.3) * (1 - moving)  # heads go down when they stop
    bob = 0.04 * np.abs(np.sin(phase)) * moving
    altitude = np.zeros(n)
    if species.body_plan == "bird" and not flying:  # hops: short jumps between pecks
        bob = bob + 0.4 * (np.sin(phase / 2) > 0.85) * moving
    if flying:
        altitude = rng.uniform(4, 14) + 0.6 * np.sin(times * 9)
    path = {"x": x, "depth": depth, "unit": unit, "facing": facing, "phase": phase,
            "moving": moving, "graze": graze, "bob": bob, "sitting": sitting,
            "flying": flying, "altitude": altitude, "mode": mode}
    if lead is None:  # followers read the leader's track, extended back in time
        pad = np.arange(1, 3 * fps + 1) / fps
        start_velocity = velocity[0] if n > 1 else 0.0
        path.update(members=0, sitting=sitting,
                    times_ext=np.concatenate([times[0] - pad[::-1], times]),
                    x_ext=np.concatenate([x[0] - start_velocity * pad[::-1], x]))
    return path


def _steady_facing(facing: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """Keep the last walking direction while standing still (no flicker when stopped)."""
    steady = facing.copy()
    current = facing[np.argmax(moving)] if moving.any() else facing[0]
    for index in range(len(facing)):
        if moving[index]:
            current = facing[index]
        steady[index] = current
    return steady


def visible_seconds(species: Species, path: dict, scene: Scene) -> float:
    """How long at least a quarter of the animal (or a quarter of the frame) is in view."""
    half_width_units, height_units = extent_units(species)
    half_width = half_width_units * path["unit"]
    top_offset = height_units * path["unit"]
    feet = ground_line(scene, path["depth"])
    if path["flying"]:
        feet = feet - path["altitude"] * path["unit"]
    left, right = path["x"] - half_width, path["x"] + half_width
    top, bottom = feet - top_offset, feet
    overlap = (np.clip(np.minimum(right, scene.width) - np.maximum(left, 0), 0, None)
               * np.clip(np.minimum(bottom, scene.height) - np.maximum(top, 0), 0, None))
    area = np.minimum((right - left) * (bottom - top), scene.width * scene.height)
    seen = (overlap >= 0.25 * area) & (overlap >= 12)
    return float(seen.sum()) / scene.fps


def plan_animals(rng, seed: int, clip: dict, scene: Scene, times: np.ndarray,
                 min_visible_seconds: float) -> list:
    """Paths for every individual of every species in the clip, far ones first; a group's
    leader is redrawn until a quarter of it is in view for `min_visible_seconds`."""
    animals = []
    for slot, name in enumerate(clip["species"]):
        species = SPECIES_BY_NAME[name]
        members = int(rng.integers(species.group[0], species.group[1] + 1))
        lead = None
        for member in range(members):
            traits = individual_traits(seed, clip["visit"], slot, member, species)
            for _ in range(30):  # redraw until the animal is really seen
                path = plan_path(rng, species, traits, scene, times, lead,
                                 reach=0.7 if clip["night"] else 1.0)
                needed = min_visible_seconds if lead is None else 0.0
                clip_seconds = len(times) / scene.fps
                if visible_seconds(species, path, scene) >= min(needed, 0.8 * clip_seconds):
                    break
            else:  # the lead could not be placed in view: let it stand in the middle
                path = plan_path(np.random.default_rng([seed, 4, clip["index"], slot]),
                                 species, traits, scene, times, lead)
                path["x"] = np.full(len(times), scene.width * 0.5)
                path["depth"] = np.full(len(times), 0.5)
                path["unit"] = unit_pixels(species, traits, scene, path["depth"])
                path["flying"] = False
            if lead is None:
                lead = path
            animals.append((species, traits, path))
    animals.sort(key=lambda item: -float(np.mean(item[2]["depth"])))
    return animals


# ----------------------------------------------------------------------------- frames

def render_frames(clip: dict, seed: int, min_visible_seconds: float):
    """Yields the clip's frames as uint8 RGB arrays (height, width, 3)."""
    scene = build_scene(seed, clip["camera"], clip["width"], clip["height"], clip["fps"])
    rng = np.random.default_rng([seed, 1, clip["index"]])
    n_frames, fps = clip["n_frames"], clip["fps"]
    times = np.arange(n_frames) / fps
    night = clip["night"]
    animals = plan_animals(rng, seed, clip, scene, times, min_visible_seconds)
    if night:
        animals = [(species, infrared_traits(traits), path) for species, traits, path in animals]

    # Light: exposure follows the sun; clouds drift; the camera settles its exposure.
    hour = clip["hour"]
    daylight = float(np.clip(math.sin(math.pi * (hour - 6) / 12) * 1.6, 0.45, 1.0))
    exposure = daylight * rng.uniform(0.85, 1.12)
    cloud_amplitude, cloud_period = rng.uniform(0, 0.15), rng.uniform(2, 8)
    fleck_strength = 0.0 if night or rng.random() < 0.35 else rng.uniform(0.15, 0.6)
    settling = rng.uniform(0.2, 0.6) if rng.random() < 0.3 else 0.0
    wind = rng.choice([0.2, 0.6, 1.2, 2.5], p=[0.3, 0.35, 0.25, 0.1])
    sway_frequency, sway_phase = rng.uniform(0.3, 1.2), rng.uniform(0, 6.3)

    # Distractors that trigger cameras: a falling leaf by day, moths in the infrared flash.
    leaf = None
    if not night and rng.random() < 0.25:
        leaf = {"x": rng.uniform(0.1, 0.9) * scene.width, "start": rng.uniform(0, times[-1] + 1e-3),
                "fall": rng.uniform(0.1, 0.3) * scene.height,
                "size": rng.uniform(0.006, 0.015) * scene.width,
                "colour": tuple(float(c) for c in rng.uniform([120, 90, 30], [200, 160, 70]))}
    moths = []
    if night and rng.random() < 0.35:
        for _ in range(int(rng.integers(1, 4))):
            centre = rng.uniform([0.2, 0.2], [0.8, 0.8]) * [scene.width, scene.height]
            moths.append({"centre": centre,
                          "radius": rng.uniform(0.05, 0.2) * scene.width,
                          "speed": rng.uniform(4, 10), "phase": rng.uniform(0, 6.3)})

    noise_sigma = scene.noise_level * (2.2 if night else 1.0) * rng.uniform(0.8, 1.2)
    # A few noise frames drawn once and reused: fresh noise every frame costs more than the
    # rest of the frame, and nobody can tell the difference after x264.
    noise = rng.normal(0, noise_sigma, (4, scene.height, scene.width))
    noise_up = np.clip(noise, 0, 255).astype(np.uint8)
    noise_down = np.clip(-noise, 0, 255).astype(np.uint8)
    if not night:
        noise_up, noise_down = (np.repeat(bank[..., None], 3, axis=3)
                                for bank in (noise_up, noise_down))
    grey_weights = np.array([[0.2, 0.55, 0.25]], np.float32)  # foliage is bright in infrared
    y0, y1, x0, x1 = scene.leaves_box
    sway_pixels = wind * 0.01 * scene.width
    for frame_index, t in enumerate(times):
        brightness = 1.0 + settling * math.exp(-t / 0.4)
        if night:
            brightness *= 1.0 + rng.normal(0, 0.025)  # infrared flicker
        else:
            clouds = 1 + cloud_amplitude * math.sin(2 * math.pi * t / cloud_period)
            brightness *= exposure * clouds
        sway = math.sin(2 * math.pi * sway_frequency * t + sway_phase) \
            + 0.4 * math.sin(2 * math.pi * 2.7 * sway_frequency * t)
        if fleck_strength > 0:
            offset = int(8 + 6 * sway * min(1.0, wind))
            window = scene.flecks[offset:offset + scene.height // 4, 8:8 + scene.width // 4]
            flecks = cv2.resize(window, (scene.width, scene.height), interpolation=cv2.INTER_LINEAR)
            light = brightness * (1 + fleck_strength * flecks)
            frame = cv2.convertScaleAbs(scene.background * light[..., None])
        else:
            frame = cv2.convertScaleAbs(scene.background, alpha=brightness)

        eyes = []
        for species, traits, path in animals:
            eyes += draw_animal(frame, species, traits, path, frame_index, t, scene, night)
        if leaf is not None and t >= leaf["start"]:
            age = t - leaf["start"]
            centre = (int((leaf["x"] + 0.03 * scene.width * math.sin(age * 4)) * 16),
                      int((0.05 * scene.height + leaf["fall"] * age) * 16))
            cv2.ellipse(frame, centre, (int(leaf["size"] * 16), int(leaf["size"] * 8)),
                        age * 200, 0, 360, leaf["colour"], -1, cv2.LINE_AA, 4)

        # Near-lens leaves, shifted and turned by the wind, in front of everything.
        matrix = cv2.getRotationMatrix2D((0.0 if x0 == 0 else float(x1 - x0), 0.0),
                                         sway * wind * 1.5, 1.0)
        matrix[0, 2] += sway * sway_pixels
        matrix[1, 2] += 0.3 * sway * sway_pixels
        alpha = cv2.warpAffine(scene.leaves_alpha, matrix, (x1 - x0, y1 - y0))[..., None]
        colour = cv2.warpAffine(scene.leaves, matrix, (x1 - x0, y1 - y0))
        region = frame[y0:y1, x0:x1].astype(np.float32)
        blended = region * (1 - alpha) + colour * np.float32(brightness) * alpha
        frame[y0:y1, x0:x1] = blended.astype(np.uint8)

        if night:
            grey = cv2.transform(frame, grey_weights).reshape(frame.shape[:2])
            grey = cv2.convertScaleAbs(grey * scene.infrared_gain)
            pick = rng.integers(4)
            grey = cv2.subtract(cv2.add(grey, noise_up[pick]), noise_down[pick])
            for eye_x, eye_y, radius in eyes:  # eye-shine: the tapetum returns the flash
                centre = (int(eye_x * 16), int(eye_y * 16))
                cv2.circle(grey, centre, int(radius * 2.2 * 16), 170, -1, cv2.LINE_AA, 4)
                cv2.circle(grey, centre, int(radius * 16), 255, -1, cv2.LINE_AA, 4)
            for moth in moths:
                angle = moth["speed"] * t + moth["phase"]
                moth_x = moth["centre"][0] + moth["radius"] * math.cos(angle)
                moth_y = moth["centre"][1] + 0.6 * moth["radius"] * math.sin(1.7 * angle)
                cv2.circle(grey, (int(moth_x * 16), int(moth_y * 16)),
                           int(max(1.0, 0.006 * scene.width) * 16), 245, -1, cv2.LINE_AA, 4)
            frame = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
        else:
            pick = rng.integers(4)
            frame = cv2.subtract(cv2.add(frame, noise_up[pick]), noise_down[pick])

        if clip["banner"]:
            draw_banner(frame, clip, t)
        yield frame


def draw_animal(frame, species, traits, path, frame_index, t, scene, night) -> list:
    """Draws one animal in one frame; returns its eyes as (x, y, radius) for eye-shine."""
    unit = float(path["unit"][frame_index])
    x = float(path["x"][frame_index])
    half_width = extent_units(species)[0]
    if x + half_width * unit < -2 or x - half_width * unit > scene.width + 2:
        return []
    feet = float(ground_line(scene, path["depth"][frame_index]))
    pose = {key: float(path[key][frame_index])
            for key in ("phase", "moving", "graze", "bob", "altitude")}
    pose.update(sitting=path["sitting"], flying=path["flying"], time=t)
    if not night and not path["flying"]:  # a soft shadow on the ground
        _draw_shadow(frame, x, feet, half_width * unit, 0.12 * unit)
    pen = Pen(frame, x, feet, unit, float(path["facing"][frame_index]))
    eyes = draw(pen, species, traits, pose)
    radius = float(np.clip(0.07 * species.head * unit, 1.0, 0.008 * scene.width))
    return [(eye_x, eye_y, radius) for eye_x, eye_y in eyes]


def _draw_shadow(frame, x, y, half_width, half_height):
    x0, x1 = int(max(0, x - half_width)), int(min(frame.shape[1], x + half_width))
    y0, y1 = int(max(0, y - half_height)), int(min(frame.shape[0], y + half_height))
    if x1 - x0 < 2 or y1 - y0 < 1:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.ellipse(mask, (int(x - x0), int(y - y0)), (int(half_width), max(1, int(half_height))),
                0, 0, 360, 0.35, -1, cv2.LINE_AA)
    region = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = (region * (1 - mask[..., None])).astype(np.uint8)


def draw_banner(frame, clip: dict, t: float):
    """The date/time strip some trap models burn into every frame."""
    height, width = frame.shape[:2]
    bar = max(10, height // 18)
    frame[height - bar:] = 0
    stamp = (datetime.datetime.fromisoformat(clip["capture_time"])
             + datetime.timedelta(seconds=int(t)))
    text = f"{clip['site'].upper()}  {stamp:%Y-%m-%d %H:%M:%S}  {24 - int(clip['night']) * 5}C"
    cv2.putText(frame, text, (4, height - bar // 4), cv2.FONT_HERSHEY_SIMPLEX, bar / 30,
                (235, 235, 235), 1, cv2.LINE_AA)
