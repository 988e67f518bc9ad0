"""gen3d.shapes: deterministic part-based objects, analytic SDF and colours, the front emblem."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gen3d.shapes import (BODY_EXTENT, CATEGORIES, FRONT_COLOR, FRONT_PART, PALETTE, Primitive,
                          Shape, make_shape, part_sdf, shape_color, shape_sdf)

GREY = (0.5, 0.5, 0.5)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead on a shared 2-core box
    yield
    torch.set_num_threads(threads)


def one(kind, center=(0, 0, 0), size=(0.5, 0.5, 0.5), axis="y", yaw=0.0, color=GREY):
    return Shape("test", 0, (Primitive(kind, center, size, color, kind, axis=axis, yaw=yaw),))


def magentaness(rgb):
    rgb = np.asarray(rgb)
    return np.minimum(rgb[..., 0], rgb[..., 2]) - rgb[..., 1]


# ----------------------------------------------------------------------------- analytic SDFs
def test_box_sdf_hand_computed():
    box = one("box", center=(1.0, 0.0, 0.0), size=(0.5, 0.25, 0.1))
    points = torch.tensor([[1.0, 0.0, 0.0],      # centre: -min half size
                           [2.0, 0.0, 0.0],      # 0.5 beyond the +x face
                           [1.5, 0.25, 0.1],     # a corner
                           [2.5, 1.25, 0.0]])    # off an edge: sqrt(1^2 + 1^2)
    expected = torch.tensor([-0.1, 0.5, 0.0, math.sqrt(2.0)])
    torch.testing.assert_close(shape_sdf(box, points), expected, atol=1e-6, rtol=0)


def test_sphere_cylinder_capsule_sdf_hand_computed():
    sphere = one("sphere", size=(0.5, 0.5, 0.5))
    torch.testing.assert_close(shape_sdf(sphere, torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.1, 0.0]])),
                               torch.tensor([1.5, -0.4]))
    # cylinder of radius 0.2 and half length 0.5 along world x
    cyl = one("cylinder", size=(0.2, 0.5, 0.2), axis="x")
    points = torch.tensor([[0.9, 0.0, 0.0], [0.0, 0.0, 0.7], [0.8, 0.6, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(shape_sdf(cyl, points), torch.tensor([0.4, 0.5, 0.5, -0.2]))
    # capsule of radius 0.1, segment from z = -0.3 to 0.3
    cap = one("capsule", size=(0.1, 0.3, 0.1), axis="z")
    points = torch.tensor([[0.0, 0.0, 0.6], [0.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(shape_sdf(cap, points), torch.tensor([0.2, 0.4, -0.1]))


def test_yaw_turns_local_x_towards_minus_z():
    # a long thin box along its local x, yawed by +90 degrees: it now lies along -z .. +z
    box = one("box", size=(0.6, 0.05, 0.05), yaw=math.pi / 2)
    on_axis = shape_sdf(box, torch.tensor([[0.0, 0.0, -0.55], [0.0, 0.0, 0.55]]))
    off_axis = shape_sdf(box, torch.tensor([[0.55, 0.0, 0.0]]))
    assert (on_axis < 0).all() and (off_axis > 0).all()
    lo, hi = box.bounds()
    np.testing.assert_allclose(hi, [0.05, 0.05, 0.6], atol=1e-9)
    np.testing.assert_allclose(lo, -hi, atol=1e-9)


def test_sdf_is_one_lipschitz_and_matches_parts(device):
    shape = make_shape("airplane", 3)
    gen = torch.Generator().manual_seed(0)
    p = (torch.rand(2000, 3, generator=gen) * 2 - 1).to(device)
    q = p + 0.05 * torch.randn(2000, 3, generator=gen).to(device)
    dp, dq = shape_sdf(shape, p), shape_sdf(shape, q)
    assert dp.device == p.device
    assert ((dp - dq).abs() <= (p - q).norm(dim=-1) + 1e-5).all()
    per_part = part_sdf(shape, p)                                        # (N, P), parts' order
    assert per_part.shape == (2000, len(shape.parts))
    torch.testing.assert_close(per_part.amin(-1), dp)
    for i, part in enumerate(shape.parts):
        alone = Shape("x", 0, (part,))
        torch.testing.assert_close(per_part[:, i], shape_sdf(alone, p))


def test_keeps_dtype_and_leading_dims():
    shape = make_shape("chair", 0)
    points = torch.zeros(2, 5, 3, dtype=torch.float64)
    assert shape_sdf(shape, points).shape == (2, 5)
    assert shape_sdf(shape, points).dtype == torch.float64
    assert shape_color(shape, points).shape == (2, 5, 3)


def test_color_is_that_of_the_part_forming_the_surface():
    red, blue = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)
    shape = Shape("x", 0, (Primitive("box", (-0.5, 0, 0), (0.3,) * 3, red, "a"),
                           Primitive("sphere", (0.5, 0, 0), (0.3,) * 3, blue, "b")))
    colors = shape_color(shape, torch.tensor([[-0.9, 0.0, 0.0], [0.9, 0.0, 0.0], [0.5, 0.0, 0.0]]))
    torch.testing.assert_close(colors, torch.tensor([red, blue, blue]))


# ----------------------------------------------------------------------------- generator
@pytest.mark.parametrize("category", CATEGORIES)
def test_deterministic_and_varied(category):
    a, b, c = make_shape(category, 7), make_shape(category, 7), make_shape(category, 8)
    assert a == b
    assert a != c
    assert a.category == category and a.seed == 7


@pytest.mark.parametrize("category", CATEGORIES)
def test_canonical_pose_fits_the_cube(category):
    for seed in range(25):
        shape = make_shape(category, seed)
        lo, hi = shape.bounds()
        assert (lo >= -0.9).all() and (hi <= 0.9).all(), (seed, lo, hi)
        body = Shape(category, seed, tuple(p for p in shape.parts if p.name != FRONT_PART))
        blo, bhi = body.bounds()
        np.testing.assert_allclose((bhi - blo).max() / 2, BODY_EXTENT, atol=1e-9)
        np.testing.assert_allclose((bhi + blo) / 2, 0.0, atol=1e-9)   # centred


def test_palette_never_near_the_front_colour():
    for family, colors in PALETTE.items():
        assert (magentaness(colors) <= 0.0).all(), family
    for category in CATEGORIES:
        for seed in range(30):
            shape = make_shape(category, seed)
            others = [p.color for p in shape.parts if p.name != FRONT_PART]
            assert magentaness(others).max() < 0.15, (category, seed)
            assert magentaness(shape.part(FRONT_PART).color) == 1.0
    assert magentaness(FRONT_COLOR) == 1.0


@pytest.mark.parametrize("category", CATEGORIES)
def test_emblem_is_on_a_front_face_and_backed_by_the_body(category):
    for seed in range(10):
        shape = make_shape(category, seed)
        emblems = [p for p in shape.parts if p.name == FRONT_PART]
        assert len(emblems) == 1
        e = emblems[0]
        front_z = e.center[2] + e.half_extent()[2]
        x, y = e.center[0], e.center[1]
        # just in front of the emblem: its colour; just behind its back: inside the body
        color = shape_color(shape, torch.tensor([[x, y, front_z + 1e-3]], dtype=torch.float32))
        torch.testing.assert_close(color, torch.tensor([FRONT_COLOR]))
        hx, hy = e.size[0], e.size[0] if e.kind == "cylinder" else e.size[1]
        z_behind = e.center[2] - e.half_extent()[2] - 0.02
        behind = torch.tensor([[x + 0.7 * hx * dx, y + 0.7 * hy * dy, z_behind]
                               for dx in (-1, 0, 1) for dy in (-1, 0, 1)], dtype=torch.float32)
        assert (shape_sdf(shape, behind) < 0).all(), (category, seed)
        # nothing in front of it: the line from the emblem towards +z is free
        ahead = torch.stack([torch.full((200,), x), torch.full((200,), y),
                             torch.linspace(front_z + 2e-3, 1.0, 200, dtype=torch.float64)], -1)
        assert (shape_sdf(shape, ahead.float()) > 0).all(), (category, seed)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="category"):
        make_shape("sofa", 0)
    with pytest.raises(TypeError, match="seed"):
        make_shape("chair", 1.5)
    with pytest.raises(ValueError, match="points"):
        shape_sdf(make_shape("chair", 0), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="kind"):
        Primitive("cone", (0, 0, 0), (1, 1, 1), GREY, "c")
    with pytest.raises(ValueError, match="size"):
        Primitive("box", (0, 0, 0), (1, 0, 1), GREY, "b")
    with pytest.raises(ValueError, match="axis"):
        Primitive("box", (0, 0, 0), (1, 1, 1), GREY, "b", axis="x")
