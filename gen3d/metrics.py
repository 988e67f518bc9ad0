"""Metrics of 3D generation: per-shape distances, set metrics, Frechet distance, usage statistics.

Per pair of shapes
    :func:`voxel_iou`, :func:`chamfer_distance` (with :func:`voxel_to_points` to get points).
Between two sets (generated G vs reference R), from a distance matrix (:func:`pairwise_distances`)
    :func:`mmd` (fidelity), :func:`coverage` (diversity), :func:`one_nna` (both; 50% is ideal),
    as defined by Achlioptas et al. 2018 ("Learning representations and generative models for
    3D point clouds") and used by PointFlow (Yang et al. 2019).
Between two sets of features
    :func:`frechet_distance` (FID-style; the features come from ``gen3d.features``).
Usage statistics
    :func:`codebook_perplexity` (VQ codebooks), :func:`category_coverage` (mode collapse).

Every tensor function keeps the device of its inputs; set metrics return python floats.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "voxel_iou", "chamfer_distance", "voxel_to_points", "pairwise_distances",
    "mmd", "coverage", "one_nna", "frechet_distance", "codebook_perplexity", "category_coverage",
]


# ----------------------------------------------------------------------------- helpers
def _as_voxel_batch(vox: torch.Tensor, name: str) -> torch.Tensor:
    """``(B, 1, D, H, W)`` or ``(B, D, H, W)`` -> ``(B, D, H, W)``."""
    if not torch.is_tensor(vox):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(vox).__name__}")
    if vox.dim() == 5:
        if vox.shape[1] != 1:
            raise ValueError(f"{name} must have one channel (B, 1, D, H, W), got {tuple(vox.shape)}")
        return vox[:, 0]
    if vox.dim() == 4:
        return vox
    raise ValueError(f"{name} must be (B, 1, D, H, W) or (B, D, H, W), got {tuple(vox.shape)}")


def _check_points(p: torch.Tensor, name: str) -> None:
    if not torch.is_tensor(p):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(p).__name__}")
    if p.dim() != 3 or p.shape[-1] != 3:
        raise ValueError(f"{name} must be (B, N, 3), got {tuple(p.shape)}")
    if p.shape[1] == 0:
        raise ValueError(f"{name} has no points: {tuple(p.shape)}")


def _as_matrix(dist, name: str) -> torch.Tensor:
    dist = torch.as_tensor(dist).detach().cpu()
    if dist.dim() != 2 or dist.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 2-D distance matrix, got {tuple(dist.shape)}")
    return dist.double()


# ----------------------------------------------------------------------------- per pair
def voxel_iou(a: torch.Tensor, b: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Intersection over union of two batches of voxel grids.

    a, b: (B, 1, D, H, W) or (B, D, H, W) occupancy in [0, 1]; a cell is filled when ``> threshold``.
    Returns (B,) IoU in [0, 1] (float, on the inputs' device). Two empty grids have IoU 1.
    """
    a, b = _as_voxel_batch(a, "a"), _as_voxel_batch(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    fa = (a > threshold).flatten(1)  # (B, D*H*W)
    fb = (b > threshold).flatten(1)  # (B, D*H*W)
    inter = (fa & fb).sum(1).float()  # exact up to 2^24 cells
    union = (fa | fb).sum(1).float()
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
    return iou.to(a.dtype if a.is_floating_point() else torch.float32)


def _nearest_sq(p: torch.Tensor, q: torch.Tensor, chunk: int) -> torch.Tensor:
    """For every point of p (B, N, 3), the squared distance to its nearest point of q (B, M, 3)."""
    out = []
    for start in range(0, p.shape[1], chunk):
        diff = p[:, start:start + chunk, None, :] - q[:, None, :, :]  # (B, n, M, 3)
        out.append(diff.square().sum(-1).min(dim=2).values)  # (B, n)
    return torch.cat(out, dim=1)  # (B, N)


def chamfer_distance(p: torch.Tensor, q: torch.Tensor, chunk_elements: int = 2**24) -> torch.Tensor:
    """Symmetric Chamfer distance between two batches of point sets.

    Defined here as the mean of **squared** nearest-neighbour distances both ways, summed:
    ``CD(P, Q) = mean_{p in P} min_{q in Q} |p - q|^2 + mean_{q in Q} min_{p in P} |p - q|^2``
    (the convention of Fan et al. 2017 and PointFlow; some papers take the square root or
    halve it, so compare numbers only within one definition).

    p: (B, N, 3), q: (B, M, 3) world coordinates. Returns (B,) non-negative, differentiable.
    The distance matrix is built in row chunks of at most ``chunk_elements`` entries, so
    B = 8, N = M = 2048 fits easily in memory.
    """
    _check_points(p, "p")
    _check_points(q, "q")
    if p.shape[0] != q.shape[0]:
        raise ValueError(f"p and q must have the same batch size, got {p.shape[0]} and {q.shape[0]}")
    rows_p = max(1, chunk_elements // (3 * p.shape[0] * q.shape[1]))
    rows_q = max(1, chunk_elements // (3 * q.shape[0] * p.shape[1]))
    return _nearest_sq(p, q, rows_p).mean(1) + _nearest_sq(q, p, rows_q).mean(1)


def _surface_mask(filled: torch.Tensor) -> torch.Tensor:
    """Filled cells (B, D, H, W) with at least one empty 6-neighbour (outside the grid is empty)."""
    pad = torch.nn.functional.pad(filled.float(), (1, 1, 1, 1, 1, 1))  # (B, D+2, H+2, W+2)
    core = pad[:, 1:-1, 1:-1, 1:-1]
    neighbours = torch.stack([
        pad[:, :-2, 1:-1, 1:-1], pad[:, 2:, 1:-1, 1:-1],
        pad[:, 1:-1, :-2, 1:-1], pad[:, 1:-1, 2:, 1:-1],
        pad[:, 1:-1, 1:-1, :-2], pad[:, 1:-1, 1:-1, 2:],
    ]).amin(0)  # (B, D, H, W): 0 where some neighbour is empty
    return (core > 0) & (neighbours < 1)


def voxel_to_points(vox: torch.Tensor, n: int, generator: torch.Generator | None = None,
                    threshold: float = 0.5, surface: bool = True) -> torch.Tensor:
    """Sample points from voxel grids, for :func:`chamfer_distance`.

    vox: (B, 1, D, H, W) or (B, D, H, W) occupancy in [0, 1] spanning the world cube [-1, 1]^3
    with index ``(k, j, i) <-> (z, y, x)`` (see ``gen3d``). ``surface=True`` samples the filled
    cells that touch an empty 6-neighbour, otherwise all filled cells; cells are drawn uniformly
    with replacement and each point is placed uniformly inside its cell.
    generator: a ``torch.Generator`` (on any device) for reproducible samples.
    Returns (B, n, 3) world (x, y, z) on the input's device. An empty grid gives n points at the
    origin (a deliberately poor but finite sample, so set metrics still run on failed samples).
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    grid = _as_voxel_batch(vox, "vox")
    filled = grid > threshold
    mask = _surface_mask(filled) if surface else filled
    sizes = torch.tensor(grid.shape[1:], dtype=torch.float32)  # (3,) = (D, H, W)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    dtype = grid.dtype if grid.is_floating_point() else torch.float32
    out = torch.zeros(grid.shape[0], n, 3, dtype=dtype, device=grid.device)
    for b in range(grid.shape[0]):
        cells = mask[b].nonzero().cpu().float()  # (C, 3) indices (k, j, i)
        if cells.shape[0] == 0:
            continue
        pick = torch.randint(cells.shape[0], (n,), generator=generator, device=gen_device).cpu()
        jitter = torch.rand(n, 3, generator=generator, device=gen_device).cpu()
        kji = (cells[pick] + jitter) / sizes * 2 - 1  # (n, 3) world (z, y, x)
        out[b] = kji.flip(-1).to(device=grid.device, dtype=dtype)  # (n, 3) world (x, y, z)
    return out


# ----------------------------------------------------------------------------- set metrics
def pairwise_distances(xs: torch.Tensor, ys: torch.Tensor, metric: str = "iou",
                       batch_size: int = 16, threshold: float = 0.5) -> torch.Tensor:
    """All distances between two sets of shapes.

    metric ``"iou"``: xs (G, 1, D, H, W), ys (R, 1, D, H, W) occupancy; distance ``1 - IoU``
    (cells ``> threshold`` are filled; two empty grids are at distance 0).
    metric ``"chamfer"``: xs (G, N, 3), ys (R, M, 3) points; distance :func:`chamfer_distance`.
    Returns (G, R) float on the inputs' device (``batch_size`` pairs of point sets at a time).
    """
    if metric == "iou":
        # float32 counts are exact up to 2^24 cells (R <= 256)
        fa = (_as_voxel_batch(xs, "xs") > threshold).flatten(1).float()  # (G, P)
        fb = (_as_voxel_batch(ys, "ys") > threshold).flatten(1).float()  # (R, P)
        if fa.shape[1] != fb.shape[1]:
            raise ValueError(f"xs and ys must have the same grid size, got {tuple(xs.shape)} and "
                             f"{tuple(ys.shape)}")
        inter = fa @ fb.T  # (G, R)
        union = fa.sum(1, keepdim=True) + fb.sum(1) - inter  # (G, R)
        iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
        return 1 - iou
    if metric == "chamfer":
        _check_points(xs, "xs")
        _check_points(ys, "ys")
        rows = []
        for x in xs:
            row = [chamfer_distance(x.expand(len(chunk), -1, -1), chunk)  # (b,)
                   for chunk in ys.split(batch_size)]
            rows.append(torch.cat(row))
        return torch.stack(rows)  # (G, R)
    raise ValueError(f"metric must be 'iou' or 'chamfer', got {metric!r}")


def mmd(dist_gen_ref) -> float:
    """Minimum matching distance (fidelity; lower is better).

    dist_gen_ref: (G, R) distances between generated and reference shapes.
    MMD = mean over reference shapes of the distance to their closest generated shape.
    """
    d = _as_matrix(dist_gen_ref, "dist_gen_ref")
    return float(d.min(dim=0).values.mean())


def coverage(dist_gen_ref) -> float:
    """Coverage (diversity; higher is better, in [0, 1]).

    dist_gen_ref: (G, R). Every generated shape is matched to its nearest reference shape;
    COV is the fraction of reference shapes that are matched at least once.
    """
    d = _as_matrix(dist_gen_ref, "dist_gen_ref")
    matched = d.argmin(dim=1).unique()
    return matched.numel() / d.shape[1]


def one_nna(dist_gg, dist_rr, dist_gr) -> float:
    """1-nearest-neighbour accuracy (Lopez-Paz & Oquab 2017, as used by PointFlow).

    dist_gg: (G, G), dist_rr: (R, R), dist_gr: (G, R) distances within and between the sets.
    Every shape of the union is classified by the set of its nearest other shape (leave one out).
    Returns the accuracy in [0, 1]: **0.5 is ideal** (the sets cannot be told apart);
    1.0 means generated and reference shapes are perfectly separable (poor fidelity or
    diversity); values well below 0.5 mean the generated set copies the reference set.
    """
    gg, rr, gr = (_as_matrix(dist_gg, "dist_gg"), _as_matrix(dist_rr, "dist_rr"),
                  _as_matrix(dist_gr, "dist_gr"))
    n_g, n_r = gr.shape
    if gg.shape != (n_g, n_g) or rr.shape != (n_r, n_r):
        raise ValueError(f"expected dist_gg {(n_g, n_g)} and dist_rr {(n_r, n_r)} to match dist_gr "
                         f"{(n_g, n_r)}, got {tuple(gg.shape)} and {tuple(rr.shape)}")
    full = torch.cat([torch.cat([gg, gr], 1), torch.cat([gr.T, rr], 1)], 0)  # (G+R, G+R)
    full.fill_diagonal_(float("inf"))
    is_gen = torch.cat([torch.ones(n_g, dtype=torch.bool), torch.zeros(n_r, dtype=torch.bool)])
    nearest = full.argmin(dim=1).cpu()  # (G+R,)
    return float((is_gen[nearest] == is_gen).double().mean())


# ----------------------------------------------------------------------------- features
def _sqrtm_psd(mat: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigen-decomposition."""
    w, v = np.linalg.eigh((mat + mat.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(feats_a, feats_b) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (the "F" of FID).

    feats_a: (N, F), feats_b: (M, F), N, M >= 2 (tensors or arrays). Computed in float64:
    ``|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2)``; the trace term uses
    eigen-decompositions of symmetric PSD matrices, so it is real and stable even when the
    covariances are singular (fewer samples than features). Identical sets give ~0; the value
    is biased upwards for small sets, so compare models only at equal set sizes.
    """
    a = (feats_a.detach().cpu().double().numpy() if torch.is_tensor(feats_a)
         else np.asarray(feats_a, np.float64))
    b = (feats_b.detach().cpu().double().numpy() if torch.is_tensor(feats_b)
         else np.asarray(feats_b, np.float64))
    for name, f in (("feats_a", a), ("feats_b", b)):
        if f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"{name} must be (N, F) with N >= 2, got {f.shape}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feats_a and feats_b must have the same width, got {a.shape} and {b.shape}")
    cov_a, cov_b = np.cov(a, rowvar=False, ddof=1), np.cov(b, rowvar=False, ddof=1)
    cov_a, cov_b = np.atleast_2d(cov_a), np.atleast_2d(cov_b)
    root_a = _sqrtm_psd(cov_a)
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)  # eigenvalues of C_a^1/2 C_b C_a^1/2
    trace_term = np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(np.clip(middle, 0, None)).sum()
    mean_term = np.sum((a.mean(0) - b.mean(0)) ** 2)
    return float(max(mean_term + trace_term, 0.0))


# ----------------------------------------------------------------------------- usage
def _usage(indices, num: int, name: str) -> torch.Tensor:
    """Fractions (num,) of each value in ``indices`` (any shape of ints in [0, num))."""
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"the number of codes/classes must be a positive int, got {num!r}")
    idx = torch.as_tensor(indices).detach().cpu().flatten().long()
    if idx.numel() == 0:
        raise ValueError(f"{name} is empty")
    if idx.min() < 0 or idx.max() >= num:
        raise ValueError(f"{name} must lie in [0, {num}), got values in "
                         f"[{int(idx.min())}, {int(idx.max())}]")
    counts = torch.bincount(idx, minlength=num).double()  # (num,)
    return counts / counts.sum()


def _entropy(p: torch.Tensor) -> float:
    """Entropy in nats of a probability vector (0 log 0 = 0)."""
    nz = p[p > 0]
    return float(-(nz * nz.log()).sum())


def codebook_perplexity(indices, num_codes: int) -> float:
    """Perplexity of codebook usage: ``exp(entropy of the code histogram)``.

    indices: any shape of code indices in [0, num_codes). Returns a value in [1, num_codes]:
    ``num_codes`` when all codes are used equally often, 1 when a single code is used.
    """
    return math.exp(_entropy(_usage(indices, num_codes, "indices")))


def category_coverage(pred_labels, num_classes: int) -> dict:
    """How many categories a set of samples covers (mode collapse shows up here).

    pred_labels: (B,) predicted category per sample, ints in [0, num_classes).
    Returns ``{"coverage": fraction of classes predicted at least once, in [0, 1],
    "entropy": entropy of the usage histogram in nats, in [0, log num_classes],
    "normalized_entropy": entropy / log(num_classes), in [0, 1] (1 = perfectly balanced),
    "histogram": (num_classes,) tensor of usage fractions}``.
    """
    hist = _usage(pred_labels, num_classes, "pred_labels")
    ent = _entropy(hist)
    return {
        "coverage": float((hist > 0).double().mean()),
        "entropy": ent,
        "normalized_entropy": ent / math.log(num_classes) if num_classes > 1 else 1.0,
        "histogram": hist.float(),
    }
