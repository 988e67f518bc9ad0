"""Procedural part-based objects: the shapes every dataset of the kit is made from.

An object is a :class:`Shape`: a tuple of :class:`Primitive` parts (boxes, spheres, cylinders,
capsules), each with a colour. ``make_shape(category, seed)`` draws one deterministically from the
seed, with random proportions and part colours, in the canonical pose of ``gen3d``:

* +y is up, the object's bounding box is centred at the origin and its largest half-extent is
  ``BODY_EXTENT`` (0.85), so every object fits inside the cube [-0.9, 0.9]^3;
* the *front* faces +z and carries the FRONT FEATURE: a flat magenta emblem (``FRONT_COLOR``, a
  disc or a thin plaque) on a +z face of the body. No other part ever has a colour near magenta,
  and the emblem sits on a flat face of a solid part, so it is seen from the front hemisphere
  (camera azimuth within +-90 degrees of +z) and hidden by that part from behind.

Geometry is analytic: :func:`shape_sdf` is the signed distance (negative inside; the minimum over
parts, exact outside the object and a lower bound of the distance inside) and :func:`shape_color`
the colour of the part that forms the surface nearest a point.

Part frame: a part's ``size`` holds its half-sizes in its own frame. A box has half-sizes
``(hx, hy, hz)``; a sphere ``(r, r, r)``; a cylinder or capsule ``(r, h, r)`` with its axis along
the part frame's y (a capsule's length is ``2 h`` between its cap centres). ``axis`` turns that
local y onto the world axis ``"x"``, ``"y"`` or ``"z"`` (cylinders and capsules only); ``yaw``
then rotates the part about +y by that many radians (counter-clockwise seen from above: local +x
goes to ``(cos yaw, 0, -sin yaw)``).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace

import numpy as np
import torch

__all__ = ["CATEGORIES", "FRONT_COLOR", "FRONT_PART", "BODY_EXTENT", "Primitive", "Shape",
           "make_shape", "shape_sdf", "shape_color", "part_sdf"]

CATEGORIES = ("chair", "table", "lamp", "car", "airplane")
FRONT_COLOR = (1.0, 0.0, 1.0)  # saturated magenta: the emblem, and nothing else, has this colour
FRONT_PART = "front_emblem"    # the emblem's part name
BODY_EXTENT = 0.85             # largest half-extent of an object's body after normalisation
EMBLEM_PROTRUSION = 0.004      # how far the emblem stands out of its face (world units): a decal
EMBLEM_MAX_RADIUS = 0.3        # the disc's largest radius (world units): ~8 pixels across at 32 x 32, big
                               # enough for a CPU-trained prior to learn it and for SDS to paint it

KINDS = ("box", "sphere", "cylinder", "capsule")
_AXES = ("x", "y", "z")
# the part frame's y goes to world axis ``axis``: a permutation of the (x, y, z) components
_AXIS_PERMUTATION = {"x": (1, 0, 2), "y": (0, 1, 2), "z": (0, 2, 1)}

# Base colours of the palette (RGB in [0, 1]). None is near magenta: min(r, b) - g <= 0 for all.
PALETTE = {
    "wood": [(0.55, 0.36, 0.20), (0.36, 0.23, 0.13), (0.78, 0.62, 0.42), (0.62, 0.45, 0.30)],
    "fabric": [(0.72, 0.16, 0.12), (0.16, 0.32, 0.68), (0.22, 0.52, 0.28), (0.55, 0.55, 0.55),
               (0.80, 0.74, 0.60), (0.12, 0.48, 0.52), (0.88, 0.50, 0.12)],
    "metal": [(0.30, 0.30, 0.32), (0.55, 0.56, 0.58), (0.75, 0.75, 0.76), (0.15, 0.15, 0.16)],
    "paint": [(0.78, 0.12, 0.10), (0.14, 0.28, 0.70), (0.18, 0.55, 0.25), (0.90, 0.52, 0.10),
              (0.85, 0.85, 0.84), (0.18, 0.18, 0.20), (0.10, 0.50, 0.55), (0.12, 0.16, 0.45)],
    "rubber": [(0.10, 0.10, 0.11), (0.20, 0.20, 0.21)],
    "shade": [(0.92, 0.86, 0.70), (0.85, 0.85, 0.82), (0.20, 0.45, 0.30), (0.70, 0.20, 0.15),
              (0.15, 0.30, 0.60), (0.90, 0.60, 0.25)],
}
COLOR_JITTER = 0.05  # each channel of a sampled colour moves by up to this much


@dataclass(frozen=True)
class Primitive:
    """One part. ``center`` (3,) world position; ``size`` (3,) half-sizes in the part frame (see
    the module docstring); ``color`` (3,) RGB in [0, 1]; ``axis`` in {"x","y","z"}; ``yaw``
    radians about +y."""
    kind: str
    center: tuple
    size: tuple
    color: tuple
    name: str
    axis: str = "y"
    yaw: float = 0.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Primitive.kind must be one of {KINDS}, got {self.kind!r}")
        if self.axis not in _AXES:
            raise ValueError(f"Primitive.axis must be one of {_AXES}, got {self.axis!r}")
        if self.kind in ("box", "sphere") and self.axis != "y":
            raise ValueError(f"Primitive {self.name!r}: axis only applies to cylinders/capsules")
        for field_name in ("center", "size", "color"):
            value = getattr(self, field_name)
            if len(value) != 3:
                raise ValueError(f"Primitive.{field_name} must have 3 numbers, got {value!r}")
            object.__setattr__(self, field_name, tuple(float(v) for v in value))
        if min(self.size) <= 0:
            raise ValueError(f"Primitive {self.name!r}: size must be positive, got {self.size}")
        if not all(0.0 <= c <= 1.0 for c in self.color):
            raise ValueError(f"Primitive {self.name!r}: color must be in [0, 1], got {self.color}")

    def half_extent(self) -> np.ndarray:
        """(3,) half-size of the part's world axis-aligned bounding box (exact for boxes)."""
        local = np.array(self.size)
        if self.kind == "capsule":
            local[1] += self.size[0]
        ext = local[list(_AXIS_PERMUTATION[self.axis])]  # part frame -> pre-yaw world axes
        c, s = abs(math.cos(self.yaw)), abs(math.sin(self.yaw))
        return np.array([c * ext[0] + s * ext[2], ext[1], s * ext[0] + c * ext[2]])


@dataclass(frozen=True)
class Shape:
    """A part-based object: ``parts`` in drawing order; ``category`` one of ``CATEGORIES``."""
    category: str
    seed: int
    parts: tuple

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo (3,), hi (3,)) world axis-aligned bounding box of all parts."""
        centers = np.array([p.center for p in self.parts])          # (P, 3)
        extents = np.stack([p.half_extent() for p in self.parts])   # (P, 3)
        return (centers - extents).min(0), (centers + extents).max(0)

    def part(self, name: str) -> Primitive:
        """The first part called ``name`` (KeyError if there is none)."""
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(f"shape {self.category}/{self.seed} has no part {name!r}")


# ----------------------------------------------------------------------------- distances
def _rotation(p: Primitive) -> np.ndarray:
    """(3, 3) world -> part frame rotation: undo the yaw, then turn ``axis`` onto local y."""
    c, s = math.cos(p.yaw), math.sin(p.yaw)
    unyaw = np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])
    return unyaw[list(_AXIS_PERMUTATION[p.axis])]


def _pack(parts, like: torch.Tensor) -> dict:
    """Parts as tensors on ``like``'s device/dtype, sorted by kind so each kind is a slice:
    ``matrix`` (3, 3P) and ``offset`` (3P,) map points to every part frame at once, ``size``
    (P, 3), ``color`` (P, 3), ``slices`` {kind code: slice}, ``order`` (P,) sorted -> input index."""
    order = sorted(range(len(parts)), key=lambda i: KINDS.index(parts[i].kind))
    rot = np.stack([_rotation(parts[i]) for i in order])                 # (P, 3, 3)
    centers = np.array([parts[i].center for i in order])                # (P, 3)
    matrix = rot.transpose(2, 0, 1).reshape(3, -1)                      # (3, 3P): x @ R_p^T
    offset = np.einsum("pij,pj->pi", rot, centers).reshape(-1)          # (3P,)
    codes = [KINDS.index(parts[i].kind) for i in order]
    slices = {c: slice(codes.index(c), len(codes) - codes[::-1].index(c)) for c in set(codes)}

    def t(array):
        return torch.as_tensor(np.asarray(array), dtype=like.dtype, device=like.device)
    return {"matrix": t(matrix), "offset": t(offset), "slices": slices,
            "size": t([parts[i].size for i in order]), "color": t([parts[i].color for i in order]),
            "order": torch.tensor(order, device=like.device)}


def _length(v: torch.Tensor) -> torch.Tensor:
    """Euclidean length over the last dim, written out per component (much faster than
    ``norm``/``sum`` over a size-3 dim on CPU)."""
    total = v[..., 0].square()
    for c in range(1, v.shape[-1]):
        total = total + v[..., c].square()
    return total.sqrt()


def _largest(v: torch.Tensor) -> torch.Tensor:
    """Max over the (small) last dim, per component."""
    out = v[..., 0]
    for c in range(1, v.shape[-1]):
        out = torch.maximum(out, v[..., c])
    return out


def _box(q, size):
    d = q.abs() - size                                                  # (N, P, 3)
    return _length(d.clamp(min=0)) + _largest(d).clamp(max=0)


def _sphere(q, size):
    return _length(q) - size[..., 0]


def _cylinder(q, size):
    radial = _length(q[..., 0::2]) - size[..., 0]                       # local x and z
    axial = q[..., 1].abs() - size[..., 1]
    outside = (radial.clamp(min=0).square() + axial.clamp(min=0).square()).sqrt()
    return outside + torch.maximum(radial, axial).clamp(max=0)


def _capsule(q, size):
    along = q[..., 1] - q[..., 1].clamp(min=-size[..., 1], max=size[..., 1])
    return (q[..., 0].square() + along.square() + q[..., 2].square()).sqrt() - size[..., 0]


_KIND_SDF = (_box, _sphere, _cylinder, _capsule)  # same order as KINDS


def _part_sdf_packed(packed: dict, points: torch.Tensor) -> torch.Tensor:
    """Signed distance of (N, 3) points to each packed part (in packed order): (N, P)."""
    q = points @ packed["matrix"] - packed["offset"]                    # (N, 3P)
    q = q.reshape(points.shape[0], -1, 3)                               # (N, P, 3) part frames
    columns = [_KIND_SDF[code](q[:, sl], packed["size"][sl])
               for code, sl in sorted(packed["slices"].items(), key=lambda kv: kv[1].start)]
    return torch.cat(columns, dim=1)                                    # (N, P)


def _check_points(points) -> torch.Tensor:
    if not isinstance(points, torch.Tensor):
        raise TypeError(f"points must be a torch.Tensor, got {type(points).__name__}")
    if points.shape[-1:] != (3,):
        raise ValueError(f"points must have shape (..., 3), got {tuple(points.shape)}")
    if not points.is_floating_point():
        raise TypeError(f"points must be floating point, got {points.dtype}")
    return points


def part_sdf(shape: Shape, points: torch.Tensor) -> torch.Tensor:
    """Signed distance of ``points: (..., 3)`` to every part of ``shape``: ``(..., P)``."""
    points = _check_points(points)
    flat = points.reshape(-1, 3)                                        # (N, 3)
    packed = _pack(shape.parts, flat)
    d = _part_sdf_packed(packed, flat)                                  # (N, P) packed order
    d = d[:, torch.argsort(packed["order"])]                            # (N, P) shape.parts order
    return d.reshape(*points.shape[:-1], len(shape.parts))


def shape_sdf(shape: Shape, points: torch.Tensor) -> torch.Tensor:
    """Signed distance ``(...,)`` of ``points: (..., 3)`` to ``shape`` (negative inside).

    The minimum over parts: exact outside the object, a lower bound of |distance| inside.
    Keeps the device and dtype of ``points``."""
    points = _check_points(points)
    flat = points.reshape(-1, 3)                                        # (N, 3)
    d = _part_sdf_packed(_pack(shape.parts, flat), flat).amin(dim=-1)   # (N,)
    return d.reshape(points.shape[:-1])


def shape_color(shape: Shape, points: torch.Tensor) -> torch.Tensor:
    """RGB ``(..., 3)`` in [0, 1] at ``points: (..., 3)``: the colour of the part with the smallest
    signed distance (the part whose surface is there, for points on the surface)."""
    points = _check_points(points)
    flat = points.reshape(-1, 3)                                        # (N, 3)
    packed = _pack(shape.parts, flat)
    nearest = _part_sdf_packed(packed, flat).argmin(dim=-1)             # (N,)
    return packed["color"][nearest].reshape(*points.shape[:-1], 3)


# ----------------------------------------------------------------------------- building blocks
def _rng(category: str, seed: int) -> np.random.Generator:
    """A generator that depends on the category name (stable crc32) and the seed."""
    return np.random.default_rng([zlib.crc32(category.encode()), int(seed)])


def _color(rng: np.random.Generator, family: str) -> tuple:
    """A palette colour of ``family`` with a small per-channel jitter."""
    base = np.array(PALETTE[family][rng.integers(len(PALETTE[family]))])
    return tuple(np.clip(base + rng.uniform(-COLOR_JITTER, COLOR_JITTER, 3), 0.0, 1.0))


def _jitter(rng: np.random.Generator, color: tuple, amount: float = 0.02) -> tuple:
    """``color`` moved by up to ``amount`` per channel (parts of a group differ slightly)."""
    return tuple(np.clip(np.array(color) + rng.uniform(-amount, amount, 3), 0.0, 1.0))


def _box_part(name, center, half, color, yaw=0.0):
    return Primitive("box", center, half, color, name, yaw=yaw)


def _rod(name, center, radius, half_length, color, axis="y", round_ends=False):
    kind = "capsule" if round_ends else "cylinder"
    return Primitive(kind, center, (radius, half_length, radius), color, name, axis=axis)


@dataclass(frozen=True)
class _Face:
    """Where the emblem goes: centre (x, y) of a flat +z face at depth ``z``, its half-sizes."""
    x: float
    y: float
    z: float
    half_w: float
    half_h: float


# ----------------------------------------------------------------------------- categories
# Each recipe draws parts in natural units (about a metre) and returns (parts, front face);
# make_shape normalises them and adds the emblem on the front face.
def _legs(rng, half_x, half_z, height, half_width, color):
    """Four legs standing on y = 0 at the corners of a (2 half_x) x (2 half_z) rectangle."""
    round_legs = rng.random() < 0.5
    legs = []
    for sx, sz, tag in ((1, 1, "fr"), (-1, 1, "fl"), (1, -1, "br"), (-1, -1, "bl")):
        center = (sx * (half_x - half_width), height / 2, sz * (half_z - half_width))
        leg_color = _jitter(rng, color)
        if round_legs:
            legs.append(_rod(f"leg_{tag}", center, half_width, height / 2, leg_color))
        else:
            half = (half_width, height / 2, half_width)
            legs.append(_box_part(f"leg_{tag}", center, half, leg_color))
    return legs


def _chair(rng):
    hw, hd = rng.uniform(0.4, 0.55), rng.uniform(0.38, 0.5)      # seat half width / depth
    ht, height = rng.uniform(0.04, 0.07), rng.uniform(0.75, 0.95)  # seat half thickness, legs
    lw, hb, bt = rng.uniform(0.06, 0.085), rng.uniform(0.38, 0.55), rng.uniform(0.045, 0.07)
    frame, cushion = _color(rng, "wood"), _color(rng, "fabric")
    seat_top = height + 2 * ht
    parts = _legs(rng, hw, hd, height, lw, frame)
    parts.append(_box_part("seat", (0, height + ht, 0), (hw, ht, hd), cushion))
    parts.append(_box_part("back", (0, seat_top + hb, -hd + bt), (hw, hb, bt), _jitter(rng, cushion)))
    if rng.random() < 0.4:                                          # armrests
        arm_y = seat_top + rng.uniform(0.22, 0.32)
        for sx, tag in ((1, "r"), (-1, "l")):
            parts.append(_box_part(f"arm_{tag}", (sx * (hw - 0.05), arm_y, 0.02),
                                   (0.05, 0.035, hd * 0.85), frame))
            parts.append(_box_part(f"arm_post_{tag}", (sx * (hw - 0.05), (seat_top + arm_y) / 2,
                                   hd * 0.7), (0.04, (arm_y - seat_top) / 2, 0.04), frame))
    face = _Face(0.0, seat_top + 1.3 * hb, -hd + 2 * bt, hw, 0.7 * hb)
    return parts, face


def _table(rng):
    hw, hd = rng.uniform(0.75, 1.0), rng.uniform(0.42, 0.65)     # top half width / depth
    ht, height = rng.uniform(0.035, 0.06), rng.uniform(0.6, 0.8)
    lw, ah, inset = rng.uniform(0.06, 0.09), rng.uniform(0.11, 0.16), 0.03
    wood = _color(rng, "wood")
    legs_color = wood if rng.random() < 0.6 else _color(rng, "metal")
    parts = _legs(rng, hw - inset, hd - inset, height, lw, legs_color)
    parts.append(_box_part("top", (0, height + ht, 0), (hw, ht, hd), wood))
    apron = _jitter(rng, wood)
    y = height - ah
    parts.append(_box_part("apron_front", (0, y, hd - inset - 0.03), (hw - inset, ah, 0.03), apron))
    parts.append(_box_part("apron_back", (0, y, -hd + inset + 0.03), (hw - inset, ah, 0.03), apron))
    for sx, tag in ((1, "r"), (-1, "l")):
        parts.append(_box_part(f"apron_{tag}", (sx * (hw - inset - 0.03), y, 0),
                               (0.03, ah, hd - inset), apron))
    if rng.random() < 0.35:                                         # lower shelf
        parts.append(_box_part("shelf", (0, height * rng.uniform(0.15, 0.3), 0),
                               (hw - inset - lw, 0.025, hd - inset - lw), _jitter(rng, wood)))
    face = _Face(0.0, y, hd - inset, hw - inset - 2 * lw, ah)
    return parts, face


def _lamp(rng):
    pole_r, pole_len = rng.uniform(0.05, 0.07), rng.uniform(1.0, 1.35)
    sw, sh = rng.uniform(0.22, 0.34), rng.uniform(0.16, 0.25)     # shade half width / height
    sd = sw * rng.uniform(0.8, 1.1)
    metal, shade = _color(rng, "metal"), _color(rng, "shade")
    if rng.random() < 0.6:
        base_h = rng.uniform(0.03, 0.05)
        base = _rod("base", (0, base_h, 0), rng.uniform(0.25, 0.36), base_h, metal)
    else:
        base_h, bw = rng.uniform(0.03, 0.06), rng.uniform(0.22, 0.32)
        base = _box_part("base", (0, base_h, 0), (bw, base_h, bw), metal)
    pole_top = 2 * base_h + pole_len
    parts = [base, _rod("pole", (0, 2 * base_h + pole_len / 2, 0), pole_r, pole_len / 2,
                        _jitter(rng, metal))]
    shade_y = pole_top + sh * rng.uniform(0.2, 0.6)
    parts.append(_box_part("shade", (0, shade_y, 0), (sw, sh, sd), shade))
    if rng.random() < 0.4:                                          # finial
        parts.append(Primitive("sphere", (0, shade_y + sh + 0.05, 0), (0.07,) * 3, metal, "finial"))
    return parts, _Face(0.0, shade_y, sd, sw, sh)


def _car(rng):
    bw, bh, bl = rng.uniform(0.38, 0.5), rng.uniform(0.13, 0.2), rng.uniform(0.85, 1.1)
    rw, ww = rng.uniform(0.16, 0.22), rng.uniform(0.06, 0.09)    # wheel radius, half width
    paint = _color(rng, "paint")
    body_y = rw + 0.4 * bh
    parts = [_box_part("body", (0, body_y, 0), (bw, bh, bl), paint)]
    ch, cl = rng.uniform(0.12, 0.2), bl * rng.uniform(0.4, 0.6)  # cabin half height / length
    cabin_z = bl * rng.uniform(-0.3, 0.05)
    parts.append(_box_part("cabin", (0, body_y + bh + ch, cabin_z),
                           (bw * rng.uniform(0.75, 0.92), ch, cl), _jitter(rng, paint)))
    rubber = _color(rng, "rubber")
    for sx, sz, tag in ((1, 1, "fr"), (-1, 1, "fl"), (1, -1, "br"), (-1, -1, "bl")):
        parts.append(_rod(f"wheel_{tag}", (sx * (bw - 0.3 * ww), rw, sz * (bl - 1.4 * rw)),
                          rw, ww, _jitter(rng, rubber), axis="x"))
    if rng.random() < 0.3:                                          # spoiler on two posts
        metal = _color(rng, "metal")
        parts.append(_box_part("spoiler", (0, body_y + bh + 0.09, -bl + 0.08),
                               (bw * 0.9, 0.025, 0.08), metal))
        for sx, tag in ((1, "r"), (-1, "l")):
            parts.append(_box_part(f"spoiler_post_{tag}", (sx * bw * 0.6, body_y + bh + 0.04,
                                                           -bl + 0.08), (0.03, 0.05, 0.03), metal))
    return parts, _Face(0.0, body_y, bl, bw, bh)


def _wing_pair(rng, name, half_span, chord, thick, y, z, sweep, color):
    """Two swept boxes meeting at x = 0 whose tips go back (-z) by ``sweep`` radians."""
    dx, dz = half_span / 2 * math.cos(sweep), half_span / 2 * math.sin(sweep)
    return [_box_part(f"{name}_r", (dx, y, z - dz), (half_span / 2, thick, chord), color, yaw=sweep),
            _box_part(f"{name}_l", (-dx, y, z - dz), (half_span / 2, thick, chord), color,
                      yaw=-sweep)]


def _airplane(rng):
    r, length = rng.uniform(0.12, 0.16), rng.uniform(0.85, 1.0)  # fuselage radius, half length
    paint, trim = _color(rng, "paint"), _color(rng, "paint")
    thick, sweep = rng.uniform(0.045, 0.06), rng.uniform(0.0, 0.5)
    parts = [_rod("fuselage", (0, 0, 0), r, length, paint, axis="z")]
    wing_y, wing_z = r * rng.uniform(-0.5, 0.3), rng.uniform(-0.1, 0.15)
    span = rng.uniform(0.8, 1.0)
    parts += _wing_pair(rng, "wing", span, rng.uniform(0.12, 0.2), thick, wing_y, wing_z, sweep,
                        trim)
    parts += _wing_pair(rng, "stabilizer", rng.uniform(0.25, 0.35), rng.uniform(0.07, 0.1), thick,
                        0.0, -length + 0.12, sweep, trim)
    fin_h, fin_c = rng.uniform(0.15, 0.25), rng.uniform(0.1, 0.15)
    parts.append(_box_part("fin", (0, r + fin_h - 0.02, -length + fin_c + 0.02),
                           (thick, fin_h, fin_c), _jitter(rng, trim)))
    if rng.random() < 0.5:                                          # engines under the wings
        er, el = rng.uniform(0.06, 0.08), rng.uniform(0.14, 0.2)
        at = span * 0.35
        for sx, tag in ((1, "r"), (-1, "l")):
            parts.append(_rod(f"engine_{tag}", (sx * at * math.cos(sweep), wing_y - thick - er,
                                                wing_z - at * math.sin(sweep) + 0.05),
                              er, el, _color(rng, "metal"), axis="z"))
    return parts, _Face(0.0, 0.0, length, r, r)


_RECIPES = {"chair": _chair, "table": _table, "lamp": _lamp, "car": _car, "airplane": _airplane}


# ----------------------------------------------------------------------------- assembly
def _normalise(parts, face):
    """Centre the parts' bounding box at the origin and scale its largest half-extent to
    ``BODY_EXTENT``; the front face follows."""
    lo, hi = Shape("", 0, tuple(parts)).bounds()
    mid, scale = (lo + hi) / 2, BODY_EXTENT / ((hi - lo).max() / 2)
    moved = [replace(p, center=tuple((np.array(p.center) - mid) * scale),
                     size=tuple(np.array(p.size) * scale)) for p in parts]
    face = _Face((face.x - mid[0]) * scale, (face.y - mid[1]) * scale, (face.z - mid[2]) * scale,
                 face.half_w * scale, face.half_h * scale)
    return moved, face


def _emblem(face: _Face) -> Primitive:
    """The front feature on ``face``: a magenta disc, or a plaque on faces too low for a disc."""
    t = EMBLEM_PROTRUSION
    center = (face.x, face.y, face.z)                # half inside the face, ``t`` outside
    radius = min(EMBLEM_MAX_RADIUS, 0.85 * min(face.half_w, face.half_h))
    if radius >= 0.06:
        return Primitive("cylinder", center, (radius, t, radius), FRONT_COLOR, FRONT_PART,
                         axis="z")
    half = (min(1.5 * EMBLEM_MAX_RADIUS, 0.85 * face.half_w), 0.85 * face.half_h, t)
    return Primitive("box", center, half, FRONT_COLOR, FRONT_PART)


def make_shape(category: str, seed: int) -> Shape:
    """A random object of ``category`` (one of ``CATEGORIES``), deterministic from ``seed`` (int),
    in the canonical pose (+y up, front +z, inside [-0.9, 0.9]^3) with its magenta front emblem."""
    if category not in _RECIPES:
        raise ValueError(f"category must be one of {CATEGORIES}, got {category!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    parts, face = _RECIPES[category](_rng(category, int(seed)))
    parts, face = _normalise(parts, face)
    return Shape(category, int(seed), tuple(parts) + (_emblem(face),))
