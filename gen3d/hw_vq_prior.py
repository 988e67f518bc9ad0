"""Plumbing of topic 03 (a VQ-VAE of voxel patches and an autoregressive transformer prior).

Holds NO graded solution: the training loops take the student's models (and, where needed, the student's
functions) as arguments, so the notebook and the autograder's quality checks run the very same code on
whatever the student wrote. The models only need the interface of the notebook's docstrings:

* a VQ-VAE ``vqvae(x) -> (logits, indices, vq_loss)``, ``vqvae.encode(x) -> (B, r, r, r)`` indices,
  ``vqvae.decode_indices(indices) -> logits``; for the code-interpolation figure also
  ``vqvae.quantizer.codebook`` (an ``nn.Embedding``) and ``vqvae.decoder``;
* a prior ``prior(tokens: (B, L)) -> (B, L, V)`` logits with ``prior.seq_len``, ``prior.vocab_size``.

Shapes: voxels ``(B, 1, R, R, R)`` occupancy in [0, 1] (axis order of ``gen3d``); token grids
``(B, r, r, r)`` with ``r = R / factor``; token sequences ``(B, T)``, ``T = r^3`` in raster order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import metrics, viz
from .hw_voxel_gan import ShapeSet, category_names, load_shapes  # the same dataset view as 01

__all__ = ["VQPriorConfig", "SMOKE", "SMALL", "FULL", "GRADER", "ShapeSet", "load_shapes", "category_names",
           "train_vqvae", "reconstruct", "train_prior", "token_nll_bits", "decode_tokens", "score_samples",
           "back_half_mask", "code_interpolation", "show_shapes", "show_reconstructions", "plot_vq_training",
           "plot_prior_training", "show_temperatures", "show_completions", "show_code_interpolation"]

MISSING_COLOR = (0.85, 0.15, 0.15)  # completed (missing) region, red as in AutoSDF's figures
KNOWN_COLOR = (0.65, 0.65, 0.65)


# ----------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class VQPriorConfig:
    """How big a run is. The defaults are the CPU ``small`` preset (16^3 shapes -> 4^3 = 64 tokens)."""

    resolution: int = 16       # R: side of the voxel grids
    factor: int = 4            # f: the encoder shrinks the side by f (r = R / f codes per side)
    num_codes: int = 128       # K: codebook entries (VQ-VAE: 512)
    code_dim: int = 32         # C: code vector length
    hidden: int = 32           # channels of the encoder/decoder convolutions
    beta: float = 0.25         # commitment weight (VQ-VAE: 0.25)
    vq_batch: int = 32         # shapes per VQ-VAE step
    vq_steps: int = 1200       # VQ-VAE training steps
    vq_lr: float = 1e-3        # VQ-VAE Adam learning rate
    eval_every: int = 100      # held-out IoU / perplexity every this many steps (0: only at the end)
    n_eval: int = 64           # held-out shapes per evaluation
    prior_dim: int = 128       # transformer width
    prior_layers: int = 3      # transformer blocks
    prior_heads: int = 4       # attention heads
    prior_batch: int = 64      # token sequences per prior step
    prior_steps: int = 450     # prior training steps (800 training shapes: longer runs memorise them)
    prior_lr: float = 1e-3     # prior AdamW learning rate
    n_samples: int = 64        # samples drawn and scored
    seed: int = 0              # seeds weights, batches and samples


SMOKE = VQPriorConfig(vq_steps=30, eval_every=10, n_eval=16, prior_dim=32, prior_layers=1, prior_steps=30,
                      n_samples=16, num_codes=32)
SMALL = VQPriorConfig()
FULL = VQPriorConfig(resolution=32, factor=4, num_codes=512, code_dim=64, hidden=64, vq_batch=32, vq_steps=6000,
                     eval_every=500, n_eval=128, prior_dim=256, prior_layers=6, prior_heads=8, prior_batch=64,
                     prior_steps=3000, prior_lr=5e-4, n_samples=128)
# the autograder's quality checks: the same budget for the student's pieces and the reference's
GRADER = VQPriorConfig(num_codes=64, code_dim=16, hidden=16, vq_steps=200, eval_every=0, n_eval=64,
                       prior_dim=64, prior_layers=2, prior_steps=250, n_samples=64, seed=1234)


# ----------------------------------------------------------------------------- data
def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# ----------------------------------------------------------------------------- VQ-VAE
@torch.no_grad()
def reconstruct(vqvae: nn.Module, voxels: torch.Tensor, batch_size: int = 64):
    """Eval-mode reconstructions: (probabilities (N, 1, R, R, R) float CPU, indices (N, r, r, r) int64 CPU).

    Restores the model's training flag afterwards.
    """
    was_training = vqvae.training
    vqvae.eval()
    dev = _model_device(vqvae)
    probs, indices = [], []
    try:
        for chunk in voxels.split(batch_size):
            logits, idx, _ = vqvae(chunk.to(dev))
            probs.append(torch.sigmoid(logits.float()).cpu())
            indices.append(idx.cpu())
    finally:
        vqvae.train(was_training)
    return torch.cat(probs), torch.cat(indices)


def train_vqvae(vqvae: nn.Module, voxels: torch.Tensor, config: VQPriorConfig, *, held_out=None,
                perplexity: Optional[Callable] = None, device=None, progress: bool = True) -> dict:
    """Train a VQ-VAE in place: loss = BCE(logits, x) + vq_loss, Adam, random batches.

    voxels: (N, 1, R, R, R) training shapes (kept where they are; batches move to ``device``).
    held_out: optional (M, 1, R, R, R); every ``eval_every`` steps (and at the end) the reconstruction IoU
    of its first ``n_eval`` shapes and the perplexity of their codes are recorded.
    perplexity(indices, num_codes): the student's function (default: gen3d.metrics.codebook_perplexity).
    Returns a history dict of lists: ``loss``, ``recon``, ``vq``, ``restarts`` (codes restarted per step,
    read from ``vqvae.quantizer.usage`` resets when available), ``eval_steps``, ``iou``, ``perplexity``,
    ``batch_perplexity`` (every step, of the training batch's codes).
    """
    device = torch.device(device) if device is not None else _model_device(vqvae)
    perplexity = perplexity or metrics.codebook_perplexity
    g = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(vqvae.parameters(), lr=config.vq_lr)
    history = {k: [] for k in ("loss", "recon", "vq", "restarts", "batch_perplexity", "eval_steps", "iou",
                               "perplexity")}
    num_codes = getattr(vqvae, "num_codes", None) or vqvae.quantizer.num_codes
    usage = getattr(getattr(vqvae, "quantizer", None), "usage", None)
    vqvae.train()

    def evaluate(step):
        if held_out is None:
            return
        probs, idx = reconstruct(vqvae, held_out[:config.n_eval])
        history["eval_steps"].append(step)
        history["iou"].append(float(metrics.voxel_iou(probs, held_out[:config.n_eval]).mean()))
        history["perplexity"].append(float(perplexity(idx, num_codes)))

    for step in range(config.vq_steps):
        batch = voxels[torch.randint(0, len(voxels), (config.vq_batch,), generator=g)].to(device)
        before = usage.detach().clone() if torch.is_tensor(usage) else None
        logits, idx, vq_loss = vqvae(batch)
        recon = F.binary_cross_entropy_with_logits(logits, batch)
        loss = recon + vq_loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"VQ-VAE loss is {float(loss)} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history["loss"].append(float(loss.detach()))
        history["recon"].append(float(recon.detach()))
        history["vq"].append(float(vq_loss.detach()))
        history["batch_perplexity"].append(float(metrics.codebook_perplexity(idx.detach().cpu(), num_codes)))
        restarted = 0
        if before is not None:
            restarted = int(((usage == 1.0) & (before != 1.0)).sum())
        history["restarts"].append(restarted)
        if config.eval_every and (step + 1) % config.eval_every == 0 and step + 1 < config.vq_steps:
            evaluate(step + 1)
        if progress and (step + 1) % max(1, config.vq_steps // 5) == 0:
            print(f"  VQ step {step + 1:5d}  loss {loss.item():.4f}  (bce {recon.item():.4f}, vq {vq_loss.item():.4f})")
    evaluate(config.vq_steps)
    vqvae.eval()
    return history


# ----------------------------------------------------------------------------- prior
def token_nll_bits(prior: nn.Module, tokens: torch.Tensor, batch_size: int = 256) -> float:
    """Mean negative log-likelihood of token sequences (N, T) under ``prior``, in bits per sequence."""
    was_training = prior.training
    prior.eval()
    dev = _model_device(prior)
    total, count = 0.0, 0
    with torch.no_grad():
        for chunk in tokens.split(batch_size):
            chunk = chunk.to(dev)
            logits = prior(chunk)  # (b, T, V)
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), chunk.reshape(-1), reduction="sum")
            total += float(nll)
            count += chunk.shape[0]
    prior.train(was_training)
    return total / max(count, 1) / math.log(2)


def train_prior(prior: nn.Module, tokens: torch.Tensor, config: VQPriorConfig, *, held_out=None, device=None,
                progress: bool = True) -> dict:
    """Maximum likelihood on token sequences: cross-entropy(prior(x), x), AdamW with a cosine schedule.

    tokens: (N, T) int64 training sequences; held_out: optional (M, T), scored at every evaluation.
    Returns a history dict: ``loss`` (nats per token, every step), ``eval_steps``, ``val_bits``
    (held-out NLL in bits per sequence).
    """
    device = torch.device(device) if device is not None else _model_device(prior)
    g = torch.Generator().manual_seed(config.seed + 1)
    opt = torch.optim.AdamW(prior.parameters(), lr=config.prior_lr, weight_decay=0.01, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s, config.prior_steps) / config.prior_steps)))
    history = {"loss": [], "eval_steps": [], "val_bits": []}
    prior.train()
    every = max(1, config.prior_steps // 10)
    for step in range(config.prior_steps):
        batch = tokens[torch.randint(0, len(tokens), (config.prior_batch,), generator=g)].to(device)
        logits = prior(batch)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.reshape(-1))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"prior loss is {float(loss)} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
        opt.step()
        sched.step()
        history["loss"].append(float(loss.detach()))
        if held_out is not None and ((step + 1) % every == 0 or step + 1 == config.prior_steps):
            history["eval_steps"].append(step + 1)
            history["val_bits"].append(token_nll_bits(prior, held_out))
        if progress and (step + 1) % max(1, config.prior_steps // 5) == 0:
            print(f"  prior step {step + 1:5d}  loss {loss.item():.3f} nats/token")
    prior.eval()
    return history


@torch.no_grad()
def decode_tokens(vqvae: nn.Module, tokens: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Token sequences (N, T) -> occupancy probabilities (N, 1, R, R, R) float on the CPU (eval mode)."""
    vqvae.eval()
    side = round(tokens.shape[1] ** (1 / 3))
    if side ** 3 != tokens.shape[1]:
        raise ValueError(f"tokens must hold r^3 codes per shape, got T = {tokens.shape[1]}")
    dev = _model_device(vqvae)
    out = [torch.sigmoid(vqvae.decode_indices(chunk.to(dev).reshape(-1, side, side, side)).float()).cpu()
           for chunk in tokens.split(batch_size)]
    return torch.cat(out)


def score_samples(samples: torch.Tensor, reference: torch.Tensor) -> dict:
    """COV, MMD and 1-NNA (IoU distances) of samples (N, 1, R, R, R) against reference shapes (M, 1, R, R, R)."""
    samples, reference = samples.float().cpu(), reference.float().cpu()
    dist_gr = metrics.pairwise_distances(samples, reference)
    dist_gg = metrics.pairwise_distances(samples, samples)
    dist_rr = metrics.pairwise_distances(reference, reference)
    return {"coverage": metrics.coverage(dist_gr), "mmd": metrics.mmd(dist_gr),
            "one_nna": metrics.one_nna(dist_gg, dist_rr, dist_gr)}


def back_half_mask(seq_len: int) -> torch.Tensor:
    """(T,) bool, True for the first half of the raster order (the back of the shape: small z)."""
    mask = torch.zeros(seq_len, dtype=torch.bool)
    mask[:seq_len // 2] = True
    return mask


def _token_region_to_voxels(mask_tokens: torch.Tensor, resolution: int) -> torch.Tensor:
    """(T,) bool over the token grid -> (1, 1, R, R, R) bool over voxels (each token owns an f^3 patch)."""
    side = round(mask_tokens.numel() ** (1 / 3))
    grid = mask_tokens.reshape(1, 1, side, side, side).float()
    return F.interpolate(grid, size=(resolution,) * 3, mode="nearest") > 0.5


@torch.no_grad()
def code_interpolation(vqvae: nn.Module, a: torch.Tensor, b: torch.Tensor, steps: int = 6):
    """Two ways to go from shape ``a`` (1, 1, R, R, R) to ``b``: (token mixing, code-vector blending).

    Each is (steps, 1, R, R, R) probabilities: row s takes the first round(s / (steps - 1) * T) tokens from b
    (raster order) and the rest from a; or decodes (1 - t) e_a + t e_b with t = s / (steps - 1).
    """
    vqvae.eval()
    dev = _model_device(vqvae)
    ia, ib = vqvae.encode(a.to(dev)), vqvae.encode(b.to(dev))  # (1, r, r, r)
    flat_a, flat_b = ia.reshape(-1), ib.reshape(-1)
    t_count = flat_a.numel()
    mixes, blends = [], []
    codebook = vqvae.quantizer.codebook
    for s in range(steps):
        t = s / (steps - 1)
        cut = round(t * t_count)
        mixed = torch.cat([flat_b[:cut], flat_a[cut:]]).reshape(ia.shape)
        mixes.append(torch.sigmoid(vqvae.decode_indices(mixed)).float().cpu())
        e = (1 - t) * codebook(ia) + t * codebook(ib)  # (1, r, r, r, C)
        blends.append(torch.sigmoid(vqvae.decoder(e.permute(0, 4, 1, 2, 3))).float().cpu())
    return torch.cat(mixes), torch.cat(blends)


# ----------------------------------------------------------------------------- plots
def _finish(fig, save):
    if save is not None:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save, bbox_inches="tight", dpi=110)
    plt.close(fig)
    return fig


def _renders(vox: torch.Tensor, size: int = 64, color=viz.DEFAULT_COLOR) -> np.ndarray:
    """(B, 1, R, R, R) -> (B, size, size, 3) images in [0, 1]."""
    return viz.render_voxels(vox.float().cpu(), size=size, color=color).permute(0, 2, 3, 1).numpy()


def show_shapes(voxels: torch.Tensor, nrow: int = 8, title=None, save=None):
    """A grid of voxel renders (B, 1, R, R, R) occupancy in [0, 1]."""
    return viz.voxel_grid_figure(voxels.float().cpu(), nrow=nrow, title=title, save=save)


def show_reconstructions(vqvae: nn.Module, voxels: torch.Tensor, device=None, save=None):
    """Inputs (top row) and their VQ-VAE reconstructions (bottom row), with per-shape IoU."""
    probs, _ = reconstruct(vqvae, voxels)
    iou = metrics.voxel_iou(probs, voxels.cpu())
    top, bottom = _renders(voxels), _renders(probs)
    n = len(voxels)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.5), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(top[i])
        axes[1, i].imshow(bottom[i])
        axes[1, i].set_title(f"IoU {float(iou[i]):.2f}", fontsize=8)
        for row in range(2):
            axes[row, i].axis("off")
    axes[0, 0].set_title("input", fontsize=8, loc="left")
    fig.suptitle("VQ-VAE: held-out inputs (top) and reconstructions from their codes (bottom)", fontsize=9)
    fig.tight_layout()
    return _finish(fig, save)


def plot_vq_training(history: dict, num_codes: int, save=None):
    """Training losses, held-out IoU and codebook perplexity (per batch and held-out) over steps."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    steps = np.arange(1, len(history["loss"]) + 1)
    axes[0].plot(steps, history["recon"], label="BCE", lw=0.8)
    axes[0].plot(steps, history["vq"], label="VQ loss", lw=0.8)
    axes[0].set_yscale("log")
    axes[0].set(xlabel="step", title="losses")
    axes[0].legend(fontsize=8)
    axes[1].plot(history["eval_steps"], history["iou"], "o-")
    axes[1].set(xlabel="step", ylabel="IoU", title="held-out reconstruction IoU", ylim=(0, 1))
    axes[2].plot(steps, history["batch_perplexity"], lw=0.6, alpha=0.6, label="training batch")
    axes[2].plot(history["eval_steps"], history["perplexity"], "o-", label="held-out (yours)")
    restarts = np.flatnonzero(np.asarray(history["restarts"]) > 0) + 1
    if len(restarts):
        axes[2].plot(restarts, np.full(len(restarts), 1.0), "|", color="red", ms=8, label="dead-code restarts")
    axes[2].axhline(num_codes, color="grey", ls="--", lw=0.8)
    axes[2].set(xlabel="step", title=f"codebook perplexity (K = {num_codes})", ylim=(0, num_codes * 1.05))
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    return _finish(fig, save)


def plot_prior_training(history: dict, save=None):
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    axes[0].plot(np.arange(1, len(history["loss"]) + 1), history["loss"], lw=0.6)
    axes[0].set(xlabel="step", ylabel="nats / token", title="prior training loss")
    axes[1].plot(history["eval_steps"], history["val_bits"], "o-")
    axes[1].set(xlabel="step", ylabel="bits / shape", title="held-out NLL")
    fig.tight_layout()
    return _finish(fig, save)


def show_temperatures(prior: nn.Module, vqvae: nn.Module, sample_tokens: Callable, temperatures, n: int = 8,
                      seed: int = 0, device=None, save=None):
    """One row of decoded samples per temperature (the same seed for every row)."""
    rows = []
    dev = _model_device(prior)
    for tau in temperatures:
        g = torch.Generator(device=dev).manual_seed(seed)
        rows.append(_renders(decode_tokens(vqvae, sample_tokens(prior, n, temperature=tau, generator=g))))
    fig, axes = plt.subplots(len(rows), n, figsize=(1.5 * n, 1.6 * len(rows)), squeeze=False)
    for r, (tau, images) in enumerate(zip(temperatures, rows)):
        for i in range(n):
            axes[r, i].imshow(images[i])
            axes[r, i].axis("off")
        axes[r, 0].set_title(f"tau = {tau}", fontsize=8, loc="left")
    fig.tight_layout()
    return _finish(fig, save)


def _two_tone(ax, occupancy: np.ndarray, new_region: np.ndarray, title=None):
    """Matplotlib voxels (R, R, R) = (z, y, x): grey where ~new_region, red where new_region."""
    filled = occupancy > 0.5
    colors = np.empty(filled.shape + (3,), dtype=np.float32)
    colors[:] = KNOWN_COLOR
    colors[new_region] = MISSING_COLOR
    # gen3d's (z, y, x) -> matplotlib (X, Y, Z) = world (x, -z, y), as in viz.show_voxels
    f = filled.transpose(2, 0, 1)[:, ::-1, :]
    c = colors.transpose(2, 0, 1, 3)[:, ::-1, :, :]
    ax.voxels(f, facecolors=c, edgecolor=(0, 0, 0, 0.15), linewidth=0.2)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=20, azim=30 - 90)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)


def show_completions(targets: torch.Tensor, vqvae: nn.Module, target_tokens: torch.Tensor, known: torch.Tensor,
                     completions, save=None):
    """Rows: one target each. Columns: the full shape, its known part, then completions (missing region red).

    targets: (n, 1, R, R, R); target_tokens: (n, T); known: (T,) bool; completions: list of (n, 1, R, R, R).
    """
    n, res = targets.shape[0], targets.shape[-1]
    missing = ~_token_region_to_voxels(known.cpu(), res)[0, 0].numpy()  # (R, R, R)
    cols = 2 + len(completions)
    fig = plt.figure(figsize=(2.2 * cols, 2.2 * n))
    for i in range(n):
        full = targets[i, 0].cpu().numpy()
        panels = [(full, np.zeros_like(missing), "input"), (full * ~missing, np.zeros_like(missing), "known part")]
        panels += [(c[i, 0].cpu().numpy(), missing, f"completion {j + 1}") for j, c in enumerate(completions)]
        for j, (occ, region, title) in enumerate(panels):
            ax = fig.add_subplot(n, cols, i * cols + j + 1, projection="3d")
            _two_tone(ax, occ, region, title if i == 0 else None)
    fig.suptitle("shape completion: the back half is known, the front half (red) is sampled", fontsize=9)
    fig.tight_layout()
    return _finish(fig, save)


def show_code_interpolation(vqvae: nn.Module, a: torch.Tensor, b: torch.Tensor, steps: int = 6, device=None,
                            save=None):
    """Top: token mixing from a to b; bottom: blending the code vectors. Neither is a smooth morph."""
    mixes, blends = code_interpolation(vqvae, a, b, steps)
    top, bottom = _renders(mixes), _renders(blends)
    fig, axes = plt.subplots(2, steps, figsize=(1.6 * steps, 3.4), squeeze=False)
    for s in range(steps):
        axes[0, s].imshow(top[s])
        axes[1, s].imshow(bottom[s])
        axes[0, s].axis("off")
        axes[1, s].axis("off")
        axes[0, s].set_title(f"{s / (steps - 1):.0%} of the tokens from b" if s else "a: mix tokens", fontsize=8)
        axes[1, s].set_title(f"t = {s / (steps - 1):.1f}" if s else "a: blend codes, t = 0", fontsize=8)
    fig.suptitle("no latent space to walk: token mixing (top) and code blending (bottom)", fontsize=9)
    fig.tight_layout()
    return _finish(fig, save)
