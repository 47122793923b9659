#!/usr/bin/env python3
"""Draws Starling's app icons into www/icons/ (PNG, RGBA) with the standard library only.

The mark: a small flock of starlings rising towards the upper right behind an amber lead bird,
on the app's night-blue. `maskable` icons fill the whole square and keep the
mark inside the central 80 % safe zone, so launchers can crop them to any shape.

Run from anywhere: python3 frontend/tools/make_icons.py
"""
import math
import os
import struct
import zlib

BACKGROUND = (15, 23, 42)      # #0f172a, the manifest's background_color and theme_color
GLOW = (30, 58, 138)           # a lighter blue behind the flock
FLOCK = (226, 232, 240)        # the birds
LEAD = (251, 191, 36)          # the lead bird, #fbbf24
SUPERSAMPLE = 4

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "www", "icons")


def flock():
    """Birds as (x, y, span, colour) in unit coordinates (0..1, y down), before any margin: a
    skein of chevrons rising towards the upper right, the lead bird largest and amber."""
    birds = [
        (0.70, 0.30, 0.30, LEAD),
        (0.47, 0.48, 0.22, FLOCK),
        (0.71, 0.60, 0.18, FLOCK),
        (0.30, 0.66, 0.15, FLOCK),
        (0.52, 0.76, 0.12, FLOCK),
    ]
    return birds


def segment_distance(px, py, ax, ay, bx, by):
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - ax - t * dx, py - ay - t * dy)


def in_bird(u, v, x, y, span):
    """A gliding bird seen from below: two wings meeting at the body, tips swept back and up."""
    half = span / 2
    thick = span * 0.09
    body = (x, y + span * 0.10)
    left = (x - half, y - span * 0.12)
    right = (x + half, y - span * 0.12)
    # Each wing bends at its middle, which reads as a bird rather than a tick mark.
    lmid = (x - half * 0.5, y - span * 0.02)
    rmid = (x + half * 0.5, y - span * 0.02)
    for a, b in ((left, lmid), (lmid, body), (body, rmid), (rmid, right)):
        if segment_distance(u, v, a[0], a[1], b[0], b[1]) <= thick:
            return True
    return False


def coverage_rounded_square(x, y, size, radius):
    """1 inside a rounded square of side `size` (pixels) with corner `radius`, else 0."""
    cx = min(max(x, radius), size - radius)
    cy = min(max(y, radius), size - radius)
    return 1.0 if (x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2 else 0.0


def render(size, maskable):
    # Maskable: full bleed, mark within the 80 % safe circle. Regular: rounded tile, mark larger.
    margin = 0.18 if maskable else 0.08
    corner = 0.0 if maskable else size * 0.22
    birds = [(margin + x * (1 - 2 * margin), margin + y * (1 - 2 * margin), r * (1 - 2 * margin), c) for x, y, r, c in flock()]
    pixels = bytearray()
    step = 1.0 / SUPERSAMPLE
    for py in range(size):
        pixels.append(0)  # PNG filter type: none
        for px in range(size):
            acc = [0.0, 0.0, 0.0, 0.0]
            for sy in range(SUPERSAMPLE):
                for sx in range(SUPERSAMPLE):
                    x = px + (sx + 0.5) * step
                    y = py + (sy + 0.5) * step
                    inside = 1.0 if maskable else coverage_rounded_square(x, y, size, corner)
                    if inside == 0.0:
                        continue
                    u, v = x / size, y / size
                    # Background with a soft glow towards the upper right.
                    d = math.hypot(u - 0.72, v - 0.32)
                    g = max(0.0, 1.0 - d / 0.75) ** 2
                    colour = [BACKGROUND[i] + (GLOW[i] - BACKGROUND[i]) * g for i in range(3)]
                    for bx, by, span, bc in birds:
                        if abs(u - bx) <= span and abs(v - by) <= span and in_bird(u, v, bx, by, span):
                            colour = list(bc)
                    for i in range(3):
                        acc[i] += colour[i]
                    acc[3] += 255.0
            n = SUPERSAMPLE * SUPERSAMPLE
            alpha = acc[3] / n
            if alpha > 0:
                # Colours were summed only over covered samples: average over those.
                covered = acc[3] / 255.0
                pixels.extend(int(round(acc[i] / covered)) for i in range(3))
            else:
                pixels.extend((0, 0, 0))
            pixels.append(int(round(alpha)))
    return bytes(pixels)


def png(size, raw):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, size, maskable in [
        ("icon-192.png", 192, False),
        ("icon-512.png", 512, False),
        ("maskable-512.png", 512, True),
        ("apple-touch-icon.png", 180, True),
    ]:
        path = os.path.join(OUT, name)
        with open(path, "wb") as f:
            f.write(png(size, render(size, maskable)))
        print(f"{os.path.relpath(path)}: {size}x{size}{' maskable' if maskable else ''}")


if __name__ == "__main__":
    main()
