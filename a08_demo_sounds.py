"""a08 — the demo's sounds: forest ambience plus the calls each species makes.

r00_make_demo_data.py writes `make_audio`'s track as a clip's wav before encoding it. The
ambience is wind, hiss, crickets at night and cicadas by day; each species in a08_demo_animals
names a call synthesiser here (harmonic sweeps, formant speech, rasps, clicks), and a bird
may sing off-screen. The track follows the seed and the clip's plan, and the sample rate is
passed in: nothing here reads r00's settings.
"""
from __future__ import annotations

import numpy as np

from a08_demo_animals import SPECIES_BY_NAME

# ----------------------------------------------------------------------------- sound

def shaped_noise(rng, n, rate, low, high, tilt=0.0) -> np.ndarray:
    """Noise limited to [low, high] Hz with a 1/f**tilt slope, unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    frequencies = np.fft.rfftfreq(n, 1.0 / rate)
    in_band = (frequencies >= low) & (frequencies <= high)
    gain = in_band / np.maximum(frequencies, 1.0) ** (tilt / 2)
    samples = np.fft.irfft(spectrum * gain, n)
    return samples / (np.sqrt(np.mean(samples ** 2)) + 1e-12)


def slow_envelope(rng, n, rate, changes_per_second, depth=0.8) -> np.ndarray:
    points = max(2, int(n / rate * changes_per_second) + 2)
    knots = rng.random(points)
    return (1 - depth) + depth * np.interp(np.linspace(0, points - 1, n), np.arange(points), knots)


def fade(n, rate, attack=0.01, release=0.03) -> np.ndarray:
    """Linear fade-in and fade-out, so no sound starts or stops with a click."""
    envelope = np.ones(n)
    attack_samples = min(n, max(1, int(attack * rate)))
    release_samples = min(n, max(1, int(release * rate)))
    envelope[:attack_samples] *= np.linspace(0, 1, attack_samples)
    envelope[n - release_samples:] *= np.linspace(1, 0, release_samples)
    return envelope


def harmonic_tone(frequencies: np.ndarray, rate, amplitudes) -> np.ndarray:
    """Sum of harmonics of a pitch curve; harmonics above Nyquist are left out."""
    phase = 2 * np.pi * np.cumsum(frequencies) / rate
    sound = np.zeros(len(frequencies))
    for number, amplitude in enumerate(amplitudes, start=1):
        if amplitude and number * frequencies.max() < rate / 2 * 0.95:
            sound += amplitude * np.sin(number * phase)
    return sound


def sweep(start_hz, end_hz, seconds, rate, amplitudes=(1.0,)) -> np.ndarray:
    n = max(2, int(seconds * rate))
    return harmonic_tone(np.linspace(start_hz, end_hz, n), rate, amplitudes) * fade(n, rate)


def sequence(rng, rate, pieces, gaps) -> np.ndarray:
    """Concatenates sounds with silent gaps (seconds) between them."""
    parts = []
    for piece, gap in zip(pieces, gaps, strict=True):
        parts += [piece, np.zeros(int(gap * rate))]
    return np.concatenate(parts) if parts else np.zeros(1)


def call_chirps(rng, rate):
    count = int(rng.integers(3, 9))
    high, low = rng.uniform(3500, 5000), rng.uniform(2000, 3000)
    pieces = [sweep(high, low, rng.uniform(0.05, 0.12), rate) if rng.random() < 0.7
              else sweep(low, high, rng.uniform(0.04, 0.08), rate) for _ in range(count)]
    return sequence(rng, rate, pieces, rng.uniform(0.05, 0.2, count))


def call_rumble(rng, rate):
    n = int(rng.uniform(1.2, 2.5) * rate)
    pitch = rng.uniform(45, 70) * (1 + 0.1 * np.sin(np.linspace(0, np.pi, n)))
    sound = harmonic_tone(pitch, rate, (1, 0.8, 0.6, 0.45, 0.3, 0.2, 0.1)) * fade(n, rate, 0.2, 0.4)
    if rng.random() < 0.35:  # a trumpet
        m = int(rng.uniform(0.5, 0.9) * rate)
        pitch = rng.uniform(420, 520) * (1 + 0.05 * np.sin(np.linspace(0, 20, m)))
        trumpet = harmonic_tone(pitch, rate, (1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15,
                                              0.1, 0.05))
        trumpet = (trumpet + 0.4 * shaped_noise(rng, m, rate, 400, 4000)) * fade(m, rate, 0.05, 0.2)
        sound = np.concatenate([sound, np.zeros(int(0.2 * rate)), 1.3 * trumpet])
    return sound


def call_pant_hoot(rng, rate):
    introduction = [sweep(330, 380, 0.15, rate, (1, 0.5, 0.25))
                    for _ in range(int(rng.integers(3, 6)))]
    build_count = int(rng.integers(5, 9))
    build_up = [sweep(400 + 40 * k, 450 + 40 * k, 0.09, rate, (1, 0.6, 0.3))
                for k in range(build_count)]  # hoots rise in pitch and come faster
    climax = []
    for _ in range(int(rng.integers(1, 4))):
        m = int(rng.uniform(0.3, 0.5) * rate)
        pitch = np.linspace(rng.uniform(900, 1100), rng.uniform(1100, 1350), m)
        scream = harmonic_tone(pitch, rate, (1, 0.7, 0.5, 0.3))
        scream = scream + 0.3 * shaped_noise(rng, m, rate, 800, 5000)
        climax.append(scream * fade(m, rate, 0.03, 0.1))
    pieces = introduction + build_up + climax
    gaps = [0.25] * len(introduction) + [0.08] * len(build_up) + [0.12] * len(climax)
    return sequence(rng, rate, pieces, gaps)


_VOWEL_FORMANTS = [(800, 1200), (300, 2300), (300, 800), (500, 1900), (500, 900)]


def call_speech(rng, rate):
    """Syllables of voiced harmonics shaped by vowel formants, with consonant hiss."""
    speaker_pitch = rng.uniform(100, 220)
    pieces, gaps = [], []
    for syllable in range(int(rng.integers(4, 13))):
        if rng.random() < 0.6:
            m = int(rng.uniform(0.03, 0.06) * rate)
            pieces.append(0.3 * shaped_noise(rng, m, rate, 2000, 6000) * fade(m, rate, 0.005, 0.01))
            gaps.append(0.0)
        m = int(rng.uniform(0.12, 0.25) * rate)
        pitch = speaker_pitch * np.linspace(1.05, 0.92, m) * (1 - 0.01 * syllable)
        first, second = _VOWEL_FORMANTS[rng.integers(len(_VOWEL_FORMANTS))]
        harmonics = np.arange(1, int(4000 / speaker_pitch))
        amplitudes = (np.exp(-((harmonics * speaker_pitch - first) / 150) ** 2)
                      + 0.6 * np.exp(-((harmonics * speaker_pitch - second) / 200) ** 2) + 0.02)
        pieces.append(harmonic_tone(pitch, rate, amplitudes) * fade(m, rate, 0.02, 0.04))
        gaps.append(rng.uniform(0.02, 0.3) if rng.random() < 0.8 else rng.uniform(0.3, 0.6))
    return sequence(rng, rate, pieces, gaps)


def call_whistle(rng, rate):
    count = int(rng.integers(1, 4))
    pieces = [sweep(rng.uniform(1900, 2500), rng.uniform(1500, 1800), rng.uniform(0.15, 0.3), rate)
              for _ in range(count)]
    return sequence(rng, rate, pieces, rng.uniform(0.3, 0.8, count))


def call_bark(rng, rate):
    count = int(rng.integers(1, 5))
    pieces = []
    for _ in range(count):
        m = int(0.12 * rate)
        pieces.append((harmonic_tone(np.full(m, rng.uniform(550, 700)), rate, (1, 0.7, 0.5, 0.3))
                       + 0.8 * shaped_noise(rng, m, rate, 500, 2500)) * fade(m, rate, 0.005, 0.06))
    return sequence(rng, rate, pieces, rng.uniform(0.4, 1.0, count))


def call_pyow(rng, rate):
    count = int(rng.integers(3, 8))
    pieces = [sweep(rng.uniform(1600, 1900), rng.uniform(600, 800), 0.18, rate, (1, 0.5, 0.25))
              for _ in range(count)]
    return sequence(rng, rate, pieces, rng.uniform(0.2, 0.35, count))


def call_grunt(rng, rate):
    count = int(rng.integers(4, 11))
    pieces = []
    for _ in range(count):
        m = int(rng.uniform(0.08, 0.15) * rate)
        pitch = np.full(m, rng.uniform(110, 160))
        pieces.append((harmonic_tone(pitch, rate, [1 / k for k in range(1, 11)])
                       + 0.6 * shaped_noise(rng, m, rate, 100, 1000)) * fade(m, rate, 0.01, 0.05))
    return sequence(rng, rate, pieces, rng.uniform(0.1, 0.5, count))


def call_sawing(rng, rate):
    count = int(rng.integers(6, 13))
    interval = rng.uniform(0.35, 0.45)
    pieces = []
    for number in range(count):
        m = int(0.2 * rate)
        voice = harmonic_tone(np.full(m, rng.uniform(90, 130)), rate,
                              [1 / k ** 0.7 for k in range(1, 16)])
        rasp = (voice + 1.2 * shaped_noise(rng, m, rate, 150, 2500)) * fade(m, rate, 0.02, 0.08)
        pieces.append(rasp * (1.0 if number % 2 else 0.6))
    return sequence(rng, rate, pieces, np.full(count, interval - 0.2))


def call_squeak(rng, rate):
    count = int(rng.integers(2, 7))
    pieces = [sweep(rng.uniform(6000, 7200), rng.uniform(6200, 7500), rng.uniform(0.03, 0.07), rate)
              for _ in range(count)]
    return sequence(rng, rate, pieces, rng.uniform(0.05, 0.3, count))


def _clicks(rng, rate, seconds, per_second, low, high, tone_hz=0.0):
    n = int(seconds * rate)
    sound = np.zeros(n)
    click_length = int(0.004 * rate)
    for start in np.sort(rng.uniform(0, seconds - 0.01, int(seconds * per_second))):
        index = int(start * rate)
        decay = np.exp(-np.linspace(0, 5, click_length))
        click = shaped_noise(rng, click_length, rate, low, high) * decay
        if tone_hz:
            click += np.sin(2 * np.pi * tone_hz * np.arange(click_length) / rate)
        sound[index:index + click_length] += click[: n - index]
    return sound


def call_rattle(rng, rate):
    return _clicks(rng, rate, rng.uniform(0.6, 1.2), rng.uniform(20, 35), 2000, 7000)


def call_chatter(rng, rate):
    return _clicks(rng, rate, rng.uniform(0.4, 1.0), rng.uniform(12, 18), 1500, 4000, tone_hz=2500)


_CALLS = {"chirps": call_chirps, "rumble": call_rumble, "pant_hoot": call_pant_hoot,
         "speech": call_speech, "whistle": call_whistle, "bark": call_bark, "pyow": call_pyow,
         "grunt": call_grunt, "sawing": call_sawing, "squeak": call_squeak, "rattle": call_rattle,
         "chatter": call_chatter}


def make_audio(clip: dict, seed: int, rate: int) -> np.ndarray:
    """Wind, insects and hiss, plus the calls planned for the clip; float in [-1, 1]."""
    rng = np.random.default_rng([seed, 5, clip["index"]])
    n = int(round(clip["n_frames"] / clip["fps"] * rate))
    wind = shaped_noise(rng, n, rate, 20, 500, tilt=1.5) * slow_envelope(rng, n, rate, 1.5)
    track = rng.uniform(0.01, 0.12) * wind + 0.004 * rng.standard_normal(n)
    seconds = np.arange(n) / rate
    if clip["night"]:  # crickets: pulsed tones a few times a second
        pitch, chirp_rate = rng.uniform(4000, 4800), rng.uniform(2, 4)
        gate = ((seconds * chirp_rate) % 1 < 0.25) * (np.sin(2 * np.pi * 30 * seconds) > 0)
        track += rng.uniform(0.01, 0.06) * gate * np.sin(2 * np.pi * pitch * seconds)
        if rng.random() < 0.7:  # the infrared filter clicks as recording starts
            m = int(0.01 * rate)
            track[:m] += 0.3 * rng.standard_normal(m) * np.exp(-np.linspace(0, 6, m))
    elif rng.random() < 0.5:  # cicadas: buzzing band noise
        pulsing = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(25, 50) * seconds)
        buzz = shaped_noise(rng, n, rate, 3500, 5000) * pulsing
        track += rng.uniform(0.005, 0.05) * buzz * slow_envelope(rng, n, rate, 0.5, 0.5)
    for name in clip["calls"]:
        species_name = "bird" if name == "bird (off-screen)" else name
        sound = _CALLS[SPECIES_BY_NAME[species_name].call](rng, rate)
        sound = sound / (np.abs(sound).max() + 1e-9)
        gain = rng.uniform(0.05, 0.15) if name.endswith("(off-screen)") else rng.uniform(0.15, 0.6)
        start = int(rng.uniform(0, max(1, n - len(sound) * 0.5)))
        piece = sound[: n - start]
        track[start:start + len(piece)] += gain * piece
    peak = np.abs(track).max()
    return track * (0.9 / peak) if peak > 0.9 else track
