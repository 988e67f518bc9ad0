"""gen3d.metrics: hand-computed cases, invariants and devices."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gen3d import metrics


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a busy 2-core machine two threads spin-wait on each other and small
    convolutions run tens of times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _grid(cells, r=4):
    """(1, 1, r, r, r) occupancy with the given (k, j, i) cells filled."""
    v = torch.zeros(1, 1, r, r, r)
    for k, j, i in cells:
        v[0, 0, k, j, i] = 1
    return v


# ----------------------------------------------------------------------------- IoU
def test_voxel_iou_hand_case(device):
    a = _grid([(0, 0, 0), (0, 0, 1)]).to(device)
    b = _grid([(0, 0, 1), (0, 0, 2)]).to(device)
    iou = metrics.voxel_iou(a, b)
    assert iou.device.type == device.type and iou.shape == (1,)
    assert iou.item() == pytest.approx(1 / 3)  # 1 shared cell of 3 filled


def test_voxel_iou_identical_empty_and_threshold():
    a = torch.rand(3, 1, 5, 5, 5)
    assert torch.allclose(metrics.voxel_iou(a, a), torch.ones(3))
    assert metrics.voxel_iou(torch.zeros(1, 1, 3, 3, 3), torch.zeros(1, 1, 3, 3, 3)).item() == 1.0
    soft = torch.full((1, 1, 2, 2, 2), 0.4)
    assert metrics.voxel_iou(soft, torch.ones(1, 1, 2, 2, 2)).item() == 0.0
    assert metrics.voxel_iou(soft, torch.ones(1, 1, 2, 2, 2), threshold=0.3).item() == 1.0
    assert metrics.voxel_iou(a[:, 0], a[:, 0]).shape == (3,)  # (B, D, H, W) accepted


def test_voxel_iou_rejects_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        metrics.voxel_iou(torch.zeros(1, 1, 4, 4, 4), torch.zeros(1, 1, 4, 4, 5))
    with pytest.raises(ValueError, match="one channel"):
        metrics.voxel_iou(torch.zeros(1, 2, 4, 4, 4), torch.zeros(1, 2, 4, 4, 4))


# ----------------------------------------------------------------------------- Chamfer
def test_chamfer_hand_case(device):
    p = torch.tensor([[[0.0, 0.0, 0.0]]], device=device)
    q = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]], device=device)
    # p -> q: nearest squared distance 1; q -> p: mean(1, 4) = 2.5
    cd = metrics.chamfer_distance(p, q)
    assert cd.device.type == device.type
    assert cd.item() == pytest.approx(3.5)
    assert metrics.chamfer_distance(q, p).item() == pytest.approx(3.5)
    assert metrics.chamfer_distance(q, q).item() == 0.0


def test_chamfer_chunking_matches_and_is_differentiable():
    g = torch.Generator().manual_seed(0)
    p = torch.randn(2, 300, 3, generator=g, requires_grad=True)
    q = torch.randn(2, 200, 3, generator=g)
    full = metrics.chamfer_distance(p, q)
    chunked = metrics.chamfer_distance(p, q, chunk_elements=1000)
    brute = torch.cdist(p, q).square()
    expected = brute.min(2).values.mean(1) + brute.min(1).values.mean(1)
    assert torch.allclose(full, expected, atol=1e-5) and torch.allclose(chunked, full, atol=1e-6)
    full.sum().backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_chamfer_2048_points_fit():
    axis = torch.arange(13) * 0.1  # a lattice with spacing 0.1: each point's twin is nearest
    lattice = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    p = lattice[:2048].expand(2, -1, -1)  # (2, 2048, 3)
    cd = metrics.chamfer_distance(p, p + 0.01)
    assert torch.allclose(cd, torch.full((2,), 2 * 3 * 0.01**2), rtol=1e-3)


def test_chamfer_rejects_bad_shapes():
    with pytest.raises(ValueError, match="p must be"):
        metrics.chamfer_distance(torch.zeros(1, 4, 2), torch.zeros(1, 4, 3))
    with pytest.raises(ValueError, match="batch size"):
        metrics.chamfer_distance(torch.zeros(1, 4, 3), torch.zeros(2, 4, 3))


# ----------------------------------------------------------------------------- points
def test_voxel_to_points_lands_in_the_right_cell(device):
    vox = _grid([(0, 1, 3)]).to(device)  # z in [-1, -0.5], y in [-0.5, 0], x in [0.5, 1]
    pts = metrics.voxel_to_points(vox, 50, torch.Generator().manual_seed(0))
    assert pts.shape == (1, 50, 3) and pts.device.type == device.type
    x, y, z = pts[0].cpu().unbind(-1)
    assert ((x >= 0.5) & (x <= 1)).all() and ((y >= -0.5) & (y <= 0)).all()
    assert ((z >= -1) & (z <= -0.5)).all()


def test_voxel_to_points_surface_skips_interior_and_is_reproducible():
    vox = torch.zeros(1, 1, 6, 6, 6)
    vox[..., 1:5, 1:5, 1:5] = 1  # a 4^3 cube whose 2^3 core is interior
    pts = metrics.voxel_to_points(vox, 500, torch.Generator().manual_seed(3))
    inner = (pts.abs() < 1 / 3).all(-1)  # the core cells span [-1/3, 1/3]^3
    assert not inner.any()
    again = metrics.voxel_to_points(vox, 500, torch.Generator().manual_seed(3))
    assert torch.equal(pts, again)
    solid = metrics.voxel_to_points(vox, 2000, torch.Generator().manual_seed(3), surface=False)
    assert (solid.abs() < 1 / 3).all(-1).any()


def test_voxel_to_points_empty_grid_gives_origin():
    pts = metrics.voxel_to_points(torch.zeros(2, 1, 4, 4, 4), 5, torch.Generator().manual_seed(0))
    assert torch.equal(pts, torch.zeros(2, 5, 3))


# ----------------------------------------------------------------------------- set metrics
def test_pairwise_iou_and_chamfer_match_the_pair_functions():
    g = torch.Generator().manual_seed(0)
    xs = (torch.rand(3, 1, 6, 6, 6, generator=g) > 0.5).float()
    ys = (torch.rand(4, 1, 6, 6, 6, generator=g) > 0.5).float()
    d = metrics.pairwise_distances(xs, ys, "iou")
    assert d.shape == (3, 4)
    expected = 1 - metrics.voxel_iou(xs[1:2].expand(4, -1, -1, -1, -1), ys)
    assert torch.allclose(d[1], expected, atol=1e-6)
    ps, qs = torch.randn(2, 30, 3, generator=g), torch.randn(3, 40, 3, generator=g)
    dc = metrics.pairwise_distances(ps, qs, "chamfer", batch_size=2)
    assert dc.shape == (2, 3)
    expected = metrics.chamfer_distance(ps[1:2], qs[2:3]).item()
    assert dc[1, 2].item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="metric"):
        metrics.pairwise_distances(xs, ys, "l2")


def test_mmd_and_coverage_hand_case():
    d = torch.tensor([[0.1, 0.5], [0.3, 0.2], [0.9, 0.8]])  # (G=3, R=2)
    assert metrics.mmd(d) == pytest.approx((0.1 + 0.2) / 2)
    assert metrics.coverage(d) == 1.0
    collapsed = torch.tensor([[0.1, 0.5, 0.6], [0.2, 0.4, 0.7]])  # all match reference 0
    assert metrics.coverage(collapsed) == pytest.approx(1 / 3)


def test_one_nna_hand_cases():
    def dists(a, b):
        return torch.cdist(torch.tensor(a)[:, None], torch.tensor(b)[:, None])

    gen, ref = [0.0, 10.0], [0.1, 10.1]  # each generated shape has a reference twin
    assert metrics.one_nna(dists(gen, gen), dists(ref, ref), dists(gen, ref)) == 0.0
    gen, ref = [0.0, 1.0], [100.0, 101.0]  # separable sets
    assert metrics.one_nna(dists(gen, gen), dists(ref, ref), dists(gen, ref)) == 1.0
    gen, ref = [0.0, 2.0, 4.0, 6.0], [1.0, 3.0, 5.0, 7.5]  # interleaved: NN is always the other set
    assert metrics.one_nna(dists(gen, gen), dists(ref, ref), dists(gen, ref)) == 0.0
    with pytest.raises(ValueError, match="dist_gg"):
        metrics.one_nna(torch.zeros(3, 3), torch.zeros(2, 2), torch.zeros(2, 2))


# ----------------------------------------------------------------------------- Frechet
def test_frechet_identical_shifted_and_hand_case():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 6, generator=g) @ torch.randn(6, 6, generator=g)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 3.0])
    expected = float(shift.square().sum())
    assert metrics.frechet_distance(a, a + shift) == pytest.approx(expected, rel=1e-6)
    # 1-D: var([-1, 1]) = 2, var([-2, 2]) = 8 -> 2 + 8 - 2 sqrt(16) = 2
    narrow, wide = np.array([[-1.0], [1.0]]), np.array([[-2.0], [2.0]])
    assert metrics.frechet_distance(narrow, wide) == pytest.approx(2.0)


def test_frechet_matches_scipy_sqrtm():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(100, 5)), rng.normal(size=(80, 5)) * 1.5 + 0.3
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = (np.sum((a.mean(0) - b.mean(0)) ** 2)
                + np.trace(ca + cb - 2 * sqrtm(ca @ cb).real))
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="N >= 2"):
        metrics.frechet_distance(a[:1], b)


# ----------------------------------------------------------------------------- usage
def test_codebook_perplexity():
    assert metrics.codebook_perplexity(torch.arange(16).repeat(3), 16) == pytest.approx(16)
    assert metrics.codebook_perplexity(torch.full((4, 5), 7), 16) == pytest.approx(1)
    assert metrics.codebook_perplexity(torch.tensor([0, 0, 1, 1]), 4) == pytest.approx(2)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        metrics.codebook_perplexity(torch.tensor([0, 4]), 4)


def test_category_coverage():
    out = metrics.category_coverage(torch.tensor([0, 0, 1]), 4)
    assert out["coverage"] == 0.5
    assert out["entropy"] == pytest.approx(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)))
    assert torch.allclose(out["histogram"], torch.tensor([2 / 3, 1 / 3, 0, 0]))
    balanced = metrics.category_coverage(torch.arange(5), 5)
    assert balanced["coverage"] == 1.0 and balanced["normalized_entropy"] == pytest.approx(1.0)
