"""a08 — the demo's animals: the species table and how one animal is drawn in one pose.

r00_make_demo_data.py draws its synthetic camera-trap clips with this module,
a08_demo_scenes (scenery, paths, frames) and a08_demo_sounds (calls and ambience). A species
says how its class looks, moves and sounds; an individual's traits (colour, build, markings)
are drawn once per visit; `draw` puts one animal into a frame through a Pen in the animal's
own units. Everything is a pure function of its arguments: nothing here reads r00's settings.
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

# ----------------------------------------------------------------------------- species

@dataclasses.dataclass(frozen=True)
class Species:
    """How one class looks, moves and sounds. Lengths are in units of its body height."""
    name: str                  # class column it is labelled as
    weight: float              # relative frequency among animal clips
    night_share: float         # fraction of its visits at night (infrared)
    body_plan: str             # "four_legged", "upright" (human) or "bird"
    height: float              # standing height / frame height when nearest the camera
    speed: float               # frame widths per second when nearest the camera
    colour: tuple              # main coat colour (RGB)
    accent: tuple              # face, markings, belly (RGB)
    length: float = 1.6        # body length
    leg: float = 0.8           # leg length
    leg_width: float = 0.14    # leg thickness
    head: float = 0.45         # head size
    head_rise: float = 0.35    # head centre above the shoulder (negative: carried low)
    tail: float = 0.4          # tail length (0: none)
    tail_angle: float = -40.0  # degrees above horizontal where the tail leaves the body
    tail_curl: float = 0.0     # degrees the tail bends over its length
    back_slope: float = 0.0    # degrees; positive lifts the shoulders (apes), negative the rump
    pattern: str = ""          # "spots", "stripes", "quills", "rings", "dots"
    features: tuple = ()       # extras: "trunk", "big_ear", "tusks", "horns", "primate"
    group: tuple = (1, 1)      # individuals per clip (min, max)
    pauses: bool = True        # stops now and then (to look around, feed)
    call: str = ""             # call synthesiser ("" = silent species)


SPECIES = (
    Species("chimpanzee", 0.14, 0.0, "four_legged", 0.60, 0.16, (38, 32, 30), (150, 118, 98),
            length=1.3, leg=0.9, leg_width=0.2, head=0.5, head_rise=0.1, tail=0.0,
            back_slope=30, features=("primate",), group=(1, 3), call="pant_hoot"),
    Species("duiker", 0.12, 0.35, "four_legged", 0.32, 0.35, (150, 68, 35), (70, 45, 30),
            length=1.5, leg=0.75, leg_width=0.1, head=0.38, head_rise=0.1, tail=0.18,
            tail_angle=25, back_slope=-12, features=("horns",), call="whistle"),
    Species("small antelope", 0.06, 0.3, "four_legged", 0.40, 0.25, (165, 108, 58),
            (235, 230, 220), length=1.6, leg=1.1, leg_width=0.1, head=0.38, head_rise=0.45,
            tail=0.22, tail_angle=-20, pattern="stripes", call="bark"),
    Species("other (primate)", 0.06, 0.0, "four_legged", 0.28, 0.30, (112, 100, 84),
            (225, 212, 190), length=1.5, leg=0.7, leg_width=0.13, head=0.5, head_rise=0.15,
            tail=1.4, tail_angle=50, tail_curl=-110, back_slope=5, features=("primate",),
            group=(1, 3), call="pyow"),
    Species("elephant", 0.05, 0.45, "four_legged", 1.15, 0.07, (108, 104, 100),
            (92, 88, 84), length=1.4, leg=0.9, leg_width=0.32, head=0.75, head_rise=-0.05,
            tail=0.4, tail_angle=-70, features=("trunk", "big_ear", "tusks"), pauses=False,
            call="rumble"),
    Species("bird", 0.05, 0.05, "bird", 0.12, 0.30, (48, 48, 58), (215, 215, 225),
            pattern="dots", group=(1, 3), call="chirps"),
    Species("human", 0.04, 0.1, "upright", 0.85, 0.22, (95, 64, 45), (200, 40, 40),
            group=(1, 2), pauses=False, call="speech"),
    Species("hog", 0.03, 0.5, "four_legged", 0.30, 0.22, (172, 76, 36), (235, 235, 228),
            length=1.7, leg=0.45, leg_width=0.16, head=0.6, head_rise=-0.2, tail=0.3,
            tail_angle=-65, group=(1, 4), call="grunt"),
    Species("rodent", 0.03, 0.85, "four_legged", 0.09, 0.35, (98, 82, 66), (175, 150, 130),
            length=1.8, leg=0.3, leg_width=0.12, head=0.5, head_rise=0.0, tail=1.6,
            tail_angle=-8, call="squeak"),
    Species("leopard", 0.02, 0.7, "four_legged", 0.45, 0.15, (205, 160, 85), (38, 28, 20),
            length=2.0, leg=0.85, leg_width=0.16, head=0.45, head_rise=0.15, tail=1.7,
            tail_angle=-30, tail_curl=90, pattern="spots", pauses=False, call="sawing"),
    Species("other (non-primate)", 0.02, 0.8, "four_legged", 0.16, 0.25, (158, 146, 122),
            (40, 35, 30), length=2.2, leg=0.55, leg_width=0.1, head=0.4, head_rise=0.1,
            tail=1.8, tail_angle=-10, tail_curl=15, pattern="rings", call="chatter"),
    Species("porcupine", 0.01, 0.9, "four_legged", 0.16, 0.10, (58, 47, 42), (225, 218, 205),
            length=1.5, leg=0.35, leg_width=0.14, head=0.35, head_rise=-0.1, tail=0.2,
            tail_angle=-30, pattern="quills", call="rattle"),
)
SPECIES_BY_NAME = {species.name: species for species in SPECIES}

_SHIRT_COLOURS = [(200, 40, 40), (40, 70, 190), (220, 190, 40), (230, 230, 225),
                  (230, 120, 30), (110, 120, 70), (30, 30, 32), (60, 140, 70)]
_TROUSER_COLOURS = [(40, 40, 45), (140, 125, 90), (60, 70, 110), (70, 80, 50)]

# ----------------------------------------------------------------------------- animals

class Pen:
    """Draws in an animal's own frame: x forward, y up, in units of its body height."""
    SHIFT = 4  # sub-pixel bits for cv2, so slow animals glide instead of jumping pixels

    def __init__(self, image, origin_x, origin_y, unit, facing):
        self.image, self.x, self.y, self.unit, self.facing = image, origin_x, origin_y, unit, facing

    def to_image(self, x, y) -> tuple[float, float]:
        return self.x + self.facing * x * self.unit, self.y - y * self.unit

    def _fixed(self, x, y):
        image_x, image_y = self.to_image(x, y)
        scale = 1 << self.SHIFT
        return int(round(image_x * scale)), int(round(image_y * scale))

    def ellipse(self, x, y, half_length, half_height, angle, colour):
        scale = (1 << self.SHIFT) * self.unit
        axes = (max(1, int(half_length * scale)), max(1, int(half_height * scale)))
        cv2.ellipse(self.image, self._fixed(x, y), axes, -angle * self.facing, 0, 360, colour,
                    -1, cv2.LINE_AA, self.SHIFT)

    def circle(self, x, y, radius, colour):
        fixed_radius = max(1, int(radius * self.unit * (1 << self.SHIFT)))
        cv2.circle(self.image, self._fixed(x, y), fixed_radius, colour, -1, cv2.LINE_AA, self.SHIFT)

    def line(self, x1, y1, x2, y2, width, colour):
        cv2.line(self.image, self._fixed(x1, y1), self._fixed(x2, y2), colour,
                 max(1, int(round(width * self.unit))), cv2.LINE_AA, self.SHIFT)

    def polyline(self, points, width, colour):
        for (x1, y1), (x2, y2) in zip(points[:-1], points[1:], strict=True):
            self.line(x1, y1, x2, y2, width, colour)

    def polygon(self, points, colour):
        fixed = np.array([self._fixed(x, y) for x, y in points], np.int32)
        cv2.fillPoly(self.image, [fixed], colour, cv2.LINE_AA, self.SHIFT)


def shade(colour, factor: float) -> tuple:
    return tuple(float(min(255.0, c * factor)) for c in colour)


def rotate(u: float, v: float, angle: float) -> tuple[float, float]:
    cos, sin = math.cos(angle), math.sin(angle)
    return u * cos - v * sin, u * sin + v * cos


def tail_points(base_x, base_y, length, start_angle, curl, segments=8):
    """A tail that leaves backwards at start_angle (degrees above horizontal) and bends."""
    points = [(base_x, base_y)]
    for step in range(1, segments + 1):
        angle = math.radians(start_angle + curl * step / segments)
        x, y = points[-1]
        step = length / segments
        points.append((x - math.cos(angle) * step, y + math.sin(angle) * step))
    return points


def draw_four_legged(pen: Pen, species: Species, traits: dict, pose: dict) -> list:
    """Body ellipse, two-segment legs, tail, neck and head; returns eye positions."""
    colour, accent = traits["colour"], traits["accent"]
    far_colour = shade(colour, 0.72)
    length = species.length * traits["build"]
    leg = species.leg
    primate = "primate" in species.features
    slope = math.radians(65 if pose["sitting"] else species.back_slope)
    body_y = (0.6 if pose["sitting"] else leg + 0.5) + pose["bob"]
    phase = pose["phase"]
    stride = 0.0 if pose["sitting"] else 0.35 * leg * pose["moving"]

    def on_body(u, v):
        du, dv = rotate(u, v, slope)
        return du, body_y + dv

    shoulder, hip = on_body(0.3 * length, -0.2), on_body(-0.32 * length, -0.2)
    # (attachment, gait phase offset, far side): diagonal pairs move together.
    legs = [(hip, math.pi, True), (shoulder, 0.0, True), (hip, 0.0, False),
            (shoulder, math.pi, False)]
    if pose["sitting"]:  # folded hind legs, arms reaching down in front
        legs = [((hip[0] + 0.3, hip[1]), 0.0, True), (shoulder, 0.0, True),
                ((hip[0] + 0.35, hip[1]), 0.0, False), (shoulder, 0.0, False)]

    def draw_leg(attach, offset, far):
        swing = math.sin(phase + offset)
        foot_x = attach[0] + stride * swing + (0.15 if far else 0.0)
        foot_y = max(0.0, math.cos(phase + offset)) * 0.15 * leg * pose["moving"]
        hind = attach is hip or attach[0] < 0
        knee_x = (attach[0] + foot_x) / 2 + (-0.08 if hind else 0.06) * leg
        knee_y = (attach[1] + foot_y) / 2
        leg_colour = far_colour if far else colour
        width = species.leg_width * (1.15 if primate and not hind else 1.0)
        pen.line(attach[0] + (0.15 if far else 0.0), attach[1], knee_x, knee_y, width, leg_colour)
        pen.line(knee_x, knee_y, foot_x, foot_y, width * 0.8, leg_colour)

    for attach, offset, far in legs:
        if far:
            draw_leg(attach, offset, far)

    if species.tail > 0:
        base = on_body(-0.5 * length, 0.15)
        short_tail = species.tail < 0.5  # short tails flick fast, long ones sway slowly
        wag = 12 * math.sin(pose["time"] * 5.0) if short_tail else 6 * math.sin(pose["time"] * 2)
        points = tail_points(base[0], base[1], species.tail, species.tail_angle + wag,
                             species.tail_curl)
        if species.pattern == "rings":
            for number, (start, end) in enumerate(zip(points[:-1], points[1:], strict=True)):
                pen.line(*start, *end, 0.14, accent if number % 2 else colour)
        else:
            pen.polyline(points, 0.12 if species.tail > 0.5 else 0.1, colour)
            if species.name == "duiker":  # white flag under the tail
                pen.circle(*points[-1], 0.06, (230, 225, 215))

    pen.ellipse(0, body_y, length / 2, 0.5, math.degrees(slope), colour)
    draw_body_pattern(pen, species, traits, length, body_y, slope)

    for attach, offset, far in legs:
        if not far:
            draw_leg(attach, offset, far)

    front_top = on_body(0.42 * length, 0.25)
    head_x = front_top[0] + 0.18 + species.head * 0.3
    head_y = front_top[1] + species.head_rise - pose["graze"]
    head = species.head
    eyes = []
    if primate:
        pen.circle(head_x - 0.05, head_y, head * 0.5, colour)
        pen.ellipse(head_x + head * 0.22, head_y - head * 0.08, head * 0.28, head * 0.3, 0, accent)
        pen.circle(head_x - head * 0.2, head_y + head * 0.1, head * 0.14, shade(colour, 1.2))  # ear
        eyes.append((head_x + head * 0.25, head_y + head * 0.08))
    else:
        pen.line(front_top[0] - 0.1, front_top[1] - 0.1, head_x - head * 0.3, head_y,
                 0.35 + 0.2 * head, colour)  # neck
        pen.ellipse(head_x, head_y, head * 0.62, head * 0.42, -25, colour)
        snout = (head_x + head * 0.55, head_y - head * 0.22)
        pen.ellipse(*snout, head * 0.3, head * 0.24, -25, shade(colour, 0.85))
        pen.ellipse(head_x - head * 0.3, head_y + head * 0.4, head * 0.12, head * 0.22, 20,
                    accent if species.name == "hog" else shade(colour, 1.1))  # ear
        if species.name == "hog":  # white face stripe
            pen.line(head_x - head * 0.1, head_y + head * 0.3, snout[0], snout[1], 0.05, accent)
        eyes.append((head_x + head * 0.1, head_y + head * 0.1))
        pen.circle(*eyes[-1], head * 0.07, (15, 12, 10))
    if "horns" in species.features:
        pen.line(head_x - head * 0.1, head_y + head * 0.35, head_x - head * 0.45,
                 head_y + head * 0.55, 0.04, (40, 32, 25))
    if "big_ear" in species.features:
        pen.ellipse(head_x - head * 0.45, head_y + head * 0.05, head * 0.38, head * 0.6, 10,
                    shade(colour, 0.85))
    if "trunk" in species.features:
        sway = 0.15 * math.sin(pose["time"] * 1.3)
        trunk = [(head_x + head * 0.45, head_y - head * 0.1),
                 (head_x + head * 0.6 + sway * 0.5, head_y - head * 0.8),
                 (head_x + head * 0.55 + sway, max(0.15, head_y - head * 1.6))]
        pen.polyline(trunk, 0.16, colour)
    if "tusks" in species.features:
        pen.polyline([(head_x + head * 0.35, head_y - head * 0.35),
                      (head_x + head * 0.75, head_y - head * 0.55),
                      (head_x + head * 0.9, head_y - head * 0.4)], 0.05, (235, 230, 215))
    return [pen.to_image(*eye) for eye in eyes] if not primate else []


def draw_body_pattern(pen: Pen, species: Species, traits: dict, length, body_y, slope):
    accent = traits["accent"]
    if species.pattern in ("spots", "dots", "rings"):
        radius = 0.04 if species.pattern != "dots" else 0.045
        for u, v in traits["marks"]:
            x, y = rotate(u * length / 2 * 0.9, v * 0.45, slope)
            pen.circle(x, body_y + y, radius, accent)
    elif species.pattern == "stripes":
        for u in np.linspace(-0.3, 0.25, 5):
            top, bottom = rotate(u * length, 0.42, slope), rotate(u * length, -0.3, slope)
            pen.line(top[0], body_y + top[1], bottom[0], body_y + bottom[1], 0.035, accent)
        for u, v in traits["marks"][:6]:
            x, y = rotate(u * length / 2 * 0.8, v * 0.3 - 0.1, slope)
            pen.circle(x, body_y + y, 0.04, accent)
    elif species.pattern == "quills":
        for number, u in enumerate(np.linspace(-0.55, 0.35, 16)):
            base = rotate(u * length, 0.3, slope)
            tip = (base[0] - 0.45 - 0.2 * (number % 3),
                   base[1] + 0.35 + 0.25 * ((number * 7) % 4) / 4)  # uneven quill lengths
            pen.line(base[0], body_y + base[1], tip[0], body_y + tip[1], 0.045,
                     accent if number % 2 else shade(species.colour, 1.4))


def draw_upright(pen: Pen, species: Species, traits: dict, pose: dict) -> list:
    """A person seen from the side; unit = standing height."""
    skin, shirt, trousers = traits["colour"], traits["shirt"], traits["trousers"]
    phase, moving, bob = pose["phase"], pose["moving"], pose["bob"]
    hip_y, shoulder_y = 0.5 + bob, 0.8 + bob
    for side, far in ((math.pi, True), (0.0, False)):
        swing = math.sin(phase + side) * 0.16 * moving
        knee = (swing * 0.6 + 0.02, 0.26 + bob * 0.5)
        colour = shade(trousers, 0.75) if far else trousers
        pen.line(0, hip_y, *knee, 0.07, colour)
        pen.line(*knee, swing, max(0.0, math.cos(phase + side)) * 0.04 * moving, 0.06, colour)
        if far:
            hand = (-swing * 0.7, 0.48 + bob)
            pen.line(0, shoulder_y, *hand, 0.05, shade(shirt, 0.75))
    if traits["backpack"]:
        pen.ellipse(-0.12, 0.7 + bob, 0.07, 0.12, 0, traits["backpack_colour"])
    pen.ellipse(0, 0.66 + bob, 0.1, 0.19, 0, shirt)
    near_swing = math.sin(phase) * 0.16 * moving
    hand = (-near_swing * 0.7, 0.48 + bob)
    pen.line(0, shoulder_y, *hand, 0.05, shirt)
    pen.circle(*hand, 0.025, skin)
    if traits["tool"]:  # machete or stick carried in the near hand
        pen.line(*hand, hand[0] + 0.22, hand[1] - 0.12, 0.015, (60, 60, 62))
    pen.circle(0.02, 0.91 + bob, 0.065, skin)
    pen.ellipse(0.0, 0.945 + bob, 0.066, 0.035, 0, traits["hair"])
    return []


def draw_bird(pen: Pen, species: Species, traits: dict, pose: dict) -> list:
    """A ground bird (guineafowl, francolin) or a small bird flying through."""
    colour, accent = traits["colour"], traits["accent"]
    flying = pose["flying"]
    body_y = (0.45 + 0.5 + pose["bob"]) if not flying else pose["altitude"]
    if not flying:
        for offset in (0.0, math.pi):
            swing = math.sin(pose["phase"] + offset) * 0.18 * pose["moving"]
            pen.line(0.05, body_y - 0.35, swing, 0.0, 0.05, (80, 65, 55))
    pen.polygon([(-0.6, body_y + 0.1), (-1.15, body_y - 0.15 + (0.2 if flying else 0)),
                 (-0.6, body_y - 0.2)], shade(colour, 0.8))  # tail
    pen.ellipse(0, body_y, 0.75, 0.5, 12, colour)
    if species.pattern == "dots" and traits["variant"] == "guineafowl":
        for u, v in traits["marks"]:
            x, y = rotate(u * 0.65, v * 0.4, math.radians(12))
            pen.circle(x, body_y + y, 0.05, accent)
    head = (0.62, body_y + 0.42 - pose["graze"] * 2.5)
    pen.line(0.45, body_y + 0.2, *head, 0.28, colour)
    pen.circle(*head, 0.25, traits["head_colour"])
    pen.polygon([(head[0] + 0.2, head[1] + 0.06), (head[0] + 0.48, head[1] - 0.05),
                 (head[0] + 0.2, head[1] - 0.08)], (200, 170, 90))  # beak
    if flying:
        flap = math.radians(55 * math.sin(pose["time"] * 28.0))
        tip = rotate(-0.2, 1.0, flap)
        pen.polygon([(-0.25, body_y + 0.1), (0.25, body_y + 0.1), (tip[0], body_y + tip[1])],
                    shade(colour, 0.85))
    pen.circle(head[0] + 0.08, head[1] + 0.06, 0.05, (10, 10, 10))
    return []  # no tapetum, no eye-shine


_DRAWERS = {"four_legged": draw_four_legged, "upright": draw_upright, "bird": draw_bird}


def draw(pen: Pen, species: Species, traits: dict, pose: dict) -> list:
    """Draws one animal by its body plan; returns its eye positions (image pixels)."""
    return _DRAWERS[species.body_plan](pen, species, traits, pose)


def individual_traits(seed: int, visit: int, slot: int, member: int, species: Species) -> dict:
    """Colour and build of one animal, the same in every clip of its visit."""
    rng = np.random.default_rng([seed, 2, visit, slot, member])
    jitter = rng.uniform(0.95, 1.05, 3) * rng.uniform(0.8, 1.15)  # mostly lighter/darker, hue kept
    traits = {
        "colour": tuple(float(min(255, c)) for c in np.asarray(species.colour) * jitter),
        "accent": tuple(float(c) for c in species.accent),
        "build": rng.uniform(0.9, 1.1), "size": rng.uniform(0.85, 1.15),
        "marks": [tuple(p) for p in _points_in_disc(rng, 30)],
    }
    if species.body_plan == "upright":
        shirt = _SHIRT_COLOURS[rng.integers(len(_SHIRT_COLOURS))]
        trousers = _TROUSER_COLOURS[rng.integers(len(_TROUSER_COLOURS))]
        traits.update(shirt=tuple(map(float, shirt)), trousers=tuple(map(float, trousers)),
                      hair=(20.0, 18.0, 16.0), backpack=bool(rng.random() < 0.4),
                      backpack_colour=tuple(map(float, rng.uniform(30, 120, 3))),
                      tool=bool(rng.random() < 0.3))
    if species.body_plan == "bird":
        variant = ["guineafowl", "francolin", "small bird"][rng.choice(3, p=[0.5, 0.3, 0.2])]
        traits["variant"] = variant
        if variant == "guineafowl":
            traits["head_colour"] = (70.0, 110.0, 170.0)
        elif variant == "francolin":
            traits["colour"] = tuple(float(c) for c in np.array([125, 100, 70]) * jitter)
            traits["head_colour"] = (150.0, 75.0, 50.0)
        else:
            traits["colour"] = tuple(float(c) for c in np.array([150, 150, 60]) * jitter)
            traits["head_colour"] = (90.0, 90.0, 40.0)
            traits["size"] *= 0.6
    return traits


_COLOUR_TRAITS = ("colour", "accent", "shirt", "trousers", "hair", "backpack_colour", "head_colour")


def infrared_traits(traits: dict) -> dict:
    """The same animal under the infrared flash: fur and cloth reflect it well, so grey and
    lighter than by day (otherwise a red duiker vanishes into the grey litter)."""
    infrared = dict(traits)
    for key in _COLOUR_TRAITS:
        if key in traits:
            red, green, blue = traits[key]
            grey = 80.0 + 0.45 * (0.2 * red + 0.55 * green + 0.25 * blue)
            infrared[key] = (grey, grey, grey)
    return infrared


def _points_in_disc(rng, count):
    radius, angle = np.sqrt(rng.random(count)), rng.uniform(0, 2 * np.pi, count)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1).round(3)
