"""Plumbing of topic 01 (a 3D-GAN on voxel grids): data, the training loop, sampling, metrics, plots.

Holds NO graded solution: :func:`train_gan` takes the student's generator, discriminator, losses,
accuracy and update rule as arguments, so the notebook and the autograder's quality check run the
very same loop on whatever the student wrote.

Shapes: voxels ``(B, 1, R, R, R)`` occupancy in [0, 1] (axis order of ``gen3d``), latents ``(B, Z)``,
discriminator logits ``(B,)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import metrics, viz

__all__ = ["OUTPUT_DIR", "GANConfig", "SMOKE", "SMALL", "FULL", "GRADER", "ShapeSet", "load_shapes", "category_names",
           "stage_report", "GANHistory", "train_gan", "sample_latents", "evaluation_latents", "sample_shapes", "Evaluator",
           "plot_training", "plot_quality", "plot_generator_losses", "show_shapes_by_category",
           "plot_latent_norms", "show_interpolation", "export_samples"]


# where the notebook writes files (git-ignored, outside solutions/ and assignments/)
OUTPUT_DIR = Path(__file__).resolve().parents[1] / "build" / "outputs" / "01_voxel_gan"


# ----------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class GANConfig:
    """How big a 3D-GAN run is. The defaults are the CPU ``small`` preset (32^3 in minutes)."""

    resolution: int = 32       # R: side of the voxel grids (paper: 64)
    z_dim: int = 32            # Z: latent size (paper: 200)
    base_channels: int = 32    # C: G's channels at 4^3 = D's channels before the logit (paper: 512)
    batch_size: int = 16       # shapes per step (paper: 100)
    steps: int = 800           # training steps (one D step, maybe skipped, and one G step each)
    lr_g: float = 5e-3         # generator Adam learning rate (paper: 0.0025)
    lr_d: float = 5e-4         # discriminator Adam learning rate (paper: 1e-5)
    beta1: float = 0.5         # Adam beta1 of both optimisers (paper: 0.5)
    d_threshold: float = 0.8   # update D only while its batch accuracy is <= this (paper: 0.8)
    eval_every: int = 200      # measure quality every this many steps (0: only at the end)
    n_eval: int = 64           # generated and held-out shapes per evaluation
    seed: int = 0              # seeds the weights, batches and latents


SMOKE = GANConfig(resolution=16, base_channels=16, batch_size=8, steps=20, eval_every=10, n_eval=16)
SMALL = GANConfig()
# the paper's network and optimiser, at 32^3 (only a subset of the shapes has 64^3 grids)
FULL = GANConfig(resolution=32, z_dim=200, base_channels=512, batch_size=100, steps=10000,
                 lr_g=2.5e-3, lr_d=1e-5, eval_every=1000, n_eval=200)
# the autograder's quality check: the same budget for the student's pieces and the reference's
GRADER = GANConfig(resolution=16, batch_size=32, steps=300, eval_every=0, seed=1234)


# ----------------------------------------------------------------------------- data
@dataclass
class ShapeSet:
    """voxels: (N, 1, R, R, R) float occupancy in {0, 1}; labels: (N,) int64 category indices."""

    voxels: torch.Tensor
    labels: torch.Tensor


def category_names() -> list:
    """The dataset's category names, indexed like the labels."""
    from . import data

    return list(data.CATEGORIES)


def load_shapes(resolution: int, split: str = "train") -> ShapeSet:
    """The procedural voxel dataset at ``resolution`` (16, 32 or 64) as float occupancy + labels."""
    from . import data

    raw = data.load_voxels(resolution, split)
    voxels = torch.as_tensor(np.asarray(raw["occupancy"])).float()  # (N, 1, R, R, R) in {0, 1}
    labels = torch.as_tensor(np.asarray(raw["labels"])).long()  # (N,)
    return ShapeSet(voxels, labels)


def stage_report(model: nn.Module, x: torch.Tensor) -> str:
    """One line per (transposed) 3D convolution of ``model``: its output shape on input ``x``.

    Runs one forward pass without gradients (BatchNorm statistics are left untouched).
    """
    layers = [(name, m) for name, m in model.named_modules()
              if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    lines, handles = [], []
    for name, module in layers:
        def hook(mod, inputs, output, name=name):
            lines.append(f"  {name:<22} {type(mod).__name__:<16} -> {tuple(output.shape)}")
        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return "\n".join([f"{type(model).__name__}: input {tuple(x.shape)}", *lines,
                      f"  output {tuple(out.shape)}"])


# ----------------------------------------------------------------------------- training
@dataclass
class GANHistory:
    """Per-step training statistics, and the quality metrics of every evaluation."""

    loss_d: list = field(default_factory=list)
    loss_g: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)
    d_updated: list = field(default_factory=list)
    eval_steps: list = field(default_factory=list)
    quality: dict = field(default_factory=dict)  # metric name -> list, one value per evaluation

    def record_quality(self, step: int, scores: dict) -> None:
        self.eval_steps.append(step)
        for name, value in scores.items():
            self.quality.setdefault(name, []).append(float(value))


def _check_finite(value: torch.Tensor, what: str, step: int) -> None:
    if not torch.is_tensor(value) or value.dim() != 0:
        raise TypeError(f"{what} must return a scalar (0-dim) tensor, got "
                        f"{tuple(value.shape) if torch.is_tensor(value) else type(value).__name__}")
    value = value.detach()
    if not torch.isfinite(value):
        raise FloatingPointError(f"{what} is {value.item()} at step {step}: check it is written on logits, "
                                 "stably (softplus / binary_cross_entropy_with_logits)")


def train_gan(generator: nn.Module, discriminator: nn.Module, voxels: torch.Tensor, config: GANConfig, *,
              discriminator_loss: Callable, generator_loss: Callable, discriminator_accuracy: Callable,
              should_update_discriminator: Callable, device=None,
              evaluator: Optional["Evaluator"] = None, progress: bool = True) -> GANHistory:
    """Train a GAN with the adaptive discriminator rule of 3D-GAN; the models are updated in place.

    generator: (B, Z) -> (B, 1, R, R, R) in [0, 1]; discriminator: (B, 1, R, R, R) -> (B,) logits.
    voxels: (N, 1, R, R, R) real occupancy (kept on the CPU; batches move to ``device``).
    discriminator_loss(real_logits, fake_logits) and generator_loss(fake_logits): scalar tensors;
    discriminator_accuracy(real_logits, fake_logits) -> float; should_update_discriminator(acc,
    threshold) -> bool. ``device`` defaults to the generator's. Each step:
      1. a real batch y and latents z ~ N(0, I) (from ``config.seed``), fakes G(z);
      2. D step on D(y), D(G(z).detach()), taken only if ``should_update_discriminator(acc)``;
      3. G step on D(G(z)).
    ``evaluator`` (if given) scores the generator every ``config.eval_every`` steps and at the end.
    """
    if voxels.dim() != 5 or voxels.shape[1] != 1 or voxels.shape[-1] != config.resolution:
        raise ValueError(f"voxels must be (N, 1, {config.resolution}, {config.resolution}, "
                         f"{config.resolution}), got {tuple(voxels.shape)}")
    device = torch.device(device) if device is not None else next(generator.parameters()).device
    generator.to(device).train()
    discriminator.to(device).train()
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr_g, betas=(config.beta1, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=(config.beta1, 0.999))
    rng = torch.Generator().manual_seed(config.seed)
    history = GANHistory()
    bar = _progress(config.steps, progress)
    for step in range(1, config.steps + 1):
        # 1. data and fakes
        index = torch.randint(len(voxels), (config.batch_size,), generator=rng)
        real = voxels[index].to(device)  # (B, 1, R, R, R)
        z = torch.randn(config.batch_size, config.z_dim, generator=rng).to(device)  # (B, Z)
        fake = generator(z)  # (B, 1, R, R, R)
        # 2. discriminator step (skipped while D is too accurate)
        real_logits, fake_logits = discriminator(real), discriminator(fake.detach())  # (B,) each
        loss_d = discriminator_loss(real_logits, fake_logits)
        _check_finite(loss_d, "discriminator_loss", step)
        accuracy = float(discriminator_accuracy(real_logits.detach(), fake_logits.detach()))
        update = bool(should_update_discriminator(accuracy, config.d_threshold))
        if update:
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        # 3. generator step (the non-saturating loss on fresh logits of the same fakes)
        loss_g = generator_loss(discriminator(fake))
        _check_finite(loss_g, "generator_loss", step)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        history.loss_d.append(loss_d.item())
        history.loss_g.append(loss_g.item())
        history.accuracy.append(accuracy)
        history.d_updated.append(update)
        if evaluator is not None and (step == config.steps or (config.eval_every and step % config.eval_every == 0)):
            history.record_quality(step, evaluator(generator))
            generator.train()
        bar(step, f"D {history.loss_d[-1]:.3f} G {history.loss_g[-1]:.3f} acc {accuracy:.2f}")
    return history


def _progress(total: int, enabled: bool) -> Callable:
    """A tqdm bar updated by ``bar(step, text)`` (a no-op when disabled or tqdm is missing)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with the kit
        enabled = False
    if not enabled:
        return lambda step, text: None
    bar = tqdm(total=total, mininterval=2.0)

    def update(step: int, text: str) -> None:
        bar.update(1)
        bar.set_postfix_str(text, refresh=False)
        if step == total:
            bar.close()
    return update


# ----------------------------------------------------------------------------- sampling
def sample_latents(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """(n, Z) standard normal latents on the CPU, the same for the same seed."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


def evaluation_latents(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """(n, Z) the fixed latents an :class:`Evaluator` built with ``seed`` samples the generator on."""
    return sample_latents(n, z_dim, seed + 12345)


@torch.no_grad()
def generate(generator: nn.Module, z: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """G(z) in eval mode (BatchNorm uses its running statistics), in batches, returned on the CPU.

    z: (N, Z) latents on any device -> (N, 1, R, R, R) float32 occupancy in [0, 1].
    The generator's train/eval mode is restored afterwards.
    """
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    try:
        out = [generator(chunk.to(device)).float().cpu() for chunk in z.split(batch_size)]
    finally:
        generator.train(was_training)
    return torch.cat(out)  # (N, 1, R, R, R)


def sample_shapes(generator: nn.Module, n: int, z_dim: int, seed: int) -> torch.Tensor:
    """n samples of the generator from seeded latents: (n, 1, R, R, R) occupancy on the CPU."""
    return generate(generator, sample_latents(n, z_dim, seed))


# ----------------------------------------------------------------------------- evaluation
def _classifier():
    from . import features

    return features.load_voxel_classifier()


class Evaluator:
    """Scores a generator against held-out shapes on a fixed set of latents.

    held_out: real shapes never trained on; ``n_samples`` of them (a seeded random subset) form the
    reference set S_r, and the generator is sampled on ``n_samples`` fixed latents (seed ``seed``).
    Calling it returns python floats: ``coverage`` (IoU-based COV), ``mmd`` (1 - IoU), ``one_nna``
    (0.5 ideal), ``category_coverage`` (fraction of categories the classifier finds) and
    ``category_entropy`` (normalised entropy of the category histogram, 1 = balanced).
    """

    def __init__(self, held_out: ShapeSet, n_samples: int, z_dim: int, seed: int = 0,
                 use_classifier: bool = True):
        if n_samples < 2 or n_samples > len(held_out.voxels):
            raise ValueError(f"n_samples must be in [2, {len(held_out.voxels)}] (the held-out set's "
                             f"size), got {n_samples}")
        order = torch.randperm(len(held_out.voxels), generator=torch.Generator().manual_seed(seed))
        self.reference = held_out.voxels[order[:n_samples]]  # (n, 1, R, R, R)
        self.z = evaluation_latents(n_samples, z_dim, seed)  # (n, Z)
        self.num_classes = int(held_out.labels.max()) + 1
        self.classifier = _classifier() if use_classifier else None
        self._dist_rr = metrics.pairwise_distances(self.reference, self.reference)  # (n, n)

    @torch.no_grad()
    def classify(self, voxels: torch.Tensor) -> torch.Tensor:
        """(N, 1, R, R, R) occupancy -> (N,) predicted category indices (CPU, int64)."""
        if self.classifier is None:
            raise RuntimeError("this Evaluator was built with use_classifier=False")
        model = self.classifier
        dev = next(model.parameters()).device
        return torch.cat([model(chunk.to(dev)).argmax(1).cpu() for chunk in voxels.split(128)])

    def score(self, samples: torch.Tensor) -> dict:
        """Quality of generated ``samples`` (N, 1, R, R, R) against the reference set (python floats)."""
        samples = samples.float().cpu()
        dist_gr = metrics.pairwise_distances(samples, self.reference)  # (N, n)
        dist_gg = metrics.pairwise_distances(samples, samples)  # (N, N)
        scores = {"coverage": metrics.coverage(dist_gr), "mmd": metrics.mmd(dist_gr),
                  "one_nna": metrics.one_nna(dist_gg, self._dist_rr, dist_gr)}
        if self.classifier is not None:
            usage = metrics.category_coverage(self.classify(samples), self.num_classes)
            scores["category_coverage"] = usage["coverage"]
            scores["category_entropy"] = usage["normalized_entropy"]
        return scores

    def __call__(self, generator: nn.Module) -> dict:
        return self.score(generate(generator, self.z))


# ----------------------------------------------------------------------------- plots
def _finish(fig, save):
    """Save the figure if asked, detach it from pyplot (shown once in a notebook), return it."""
    if save is not None:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save, bbox_inches="tight")
    plt.close(fig)
    return fig


def _moving_average(values, window: int) -> np.ndarray:
    y = np.asarray(values, dtype=np.float64)
    if len(y) == 0:
        return y
    window = max(1, min(window, len(y)))
    csum = np.cumsum(np.insert(y, 0, 0.0))
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(0, idx - window)
    return (csum[idx] - csum[lo]) / (idx - lo)


def plot_training(history: GANHistory, threshold: float = 0.8, window: int = 25, save=None):
    """Losses, D's batch accuracy (with the update threshold) and the fraction of steps D was updated."""
    steps = np.arange(1, len(history.loss_d) + 1)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    for name, values in (("D loss", history.loss_d), ("G loss", history.loss_g)):
        axes[0].plot(steps, _moving_average(values, window), label=name)
    axes[1].plot(steps, _moving_average(history.accuracy, window), label="D accuracy")
    axes[1].axhline(threshold, color="k", linestyle="--", linewidth=0.8, label="threshold")
    axes[2].plot(steps, _moving_average(np.asarray(history.d_updated, float), window),
                 label="fraction of steps D was updated")
    axes[1].set_ylim(0, 1.02)
    axes[2].set_ylim(0, 1.02)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"training (moving average over {window} steps)")
    fig.tight_layout()
    return _finish(fig, save)


_QUALITY_PANELS = (("category_coverage", "category coverage (higher is better)"),
                   ("category_entropy", "category entropy, normalised (1 = balanced)"),
                   ("coverage", "COV (higher is better)"), ("mmd", "MMD, 1 - IoU (lower is better)"),
                   ("one_nna", "1-NNA (0.5 is ideal)"))


def plot_quality(history: GANHistory, baseline: Optional[dict] = None, save=None):
    """The quality metrics of every evaluation during training, one panel each (all lie in [0, 1]).

    baseline: optional scores of real shapes (``Evaluator.score``), drawn as dashed lines: what a
    generator that matched the data distribution would reach.
    """
    panels = [(key, title) for key, title in _QUALITY_PANELS if key in history.quality]
    if not panels:
        raise ValueError("history has no quality metrics: train with an evaluator")
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 2.9), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        ax.plot(history.eval_steps, history.quality[key], marker="o", label="generator")
        if baseline is not None and key in baseline:
            ax.axhline(baseline[key], color="k", linestyle="--", linewidth=0.8, label="real shapes")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return _finish(fig, save)


def plot_generator_losses(generator_loss: Callable, save=None):
    """The student's generator loss and its gradient on one logit, next to the saturating loss."""
    logits = torch.linspace(-8, 8, 161, dtype=torch.float64)
    values, grads = [], []
    for logit in logits:
        x = logit.reshape(1).clone().requires_grad_(True)  # (1,): a batch of one fake logit
        loss = generator_loss(x)
        (grad,) = torch.autograd.grad(loss, x)
        values.append(loss.item())
        grads.append(float(grad[0]))
    saturating = -F.softplus(logits)  # log(1 - sigmoid(l)), what G would minimise in the minimax game
    saturating_grad = -torch.sigmoid(logits)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].plot(logits, values, label="your generator_loss")
    axes[0].plot(logits, saturating, "--", label="saturating: log(1 - D(G(z)))")
    axes[1].plot(logits, grads, label="your gradient")
    axes[1].plot(logits, saturating_grad, "--", label="saturating gradient")
    axes[0].set_title("loss vs fake logit")
    axes[1].set_title("d loss / d logit")
    for ax in axes:
        ax.set_xlabel("fake logit (D rejects <- 0 -> D is fooled)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _finish(fig, save)


def _render(voxels: torch.Tensor, size: int = 48) -> np.ndarray:
    """(N, 1, R, R, R) -> (N, size, size, 3) numpy renders in [0, 1]."""
    return viz.render_voxels(voxels.float(), size=size).permute(0, 2, 3, 1).numpy()


def show_shapes_by_category(voxels: torch.Tensor, labels: torch.Tensor, categories, per_category: int = 6,
                            title=None, save=None):
    """A grid of renders, one row per category (``labels`` may be true or predicted categories).

    voxels: (N, 1, R, R, R) occupancy; labels: (N,) ints indexing ``categories``. A row with no
    shape says so: for generated shapes that is a category the generator never produces.
    """
    labels = torch.as_tensor(labels).cpu()
    fig, axes = plt.subplots(len(categories), per_category, squeeze=False,
                             figsize=(1.3 * per_category + 0.8, 1.3 * len(categories)))
    for row, name in enumerate(categories):
        members = torch.nonzero(labels == row).flatten()[:per_category]
        images = _render(voxels[members]) if len(members) else []
        for col in range(per_category):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(images):
                ax.imshow(images[col])
        axes[row, 0].set_ylabel(f"{name}\n({int((labels == row).sum())})", fontsize=9)
        if not len(members):
            axes[row, 0].text(0.05, 0.5, "none", transform=axes[row, 0].transAxes, color="gray")
    if title is not None:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _finish(fig, save)


def plot_latent_norms(paths: dict, save=None):
    """Norm of the latents along each path (name -> (T, Z)), with the typical norm sqrt(Z) dashed."""
    fig, ax = plt.subplots(figsize=(4.5, 3.0))
    z_dim = None
    for name, path in paths.items():
        z_dim = path.shape[-1]
        t = np.linspace(0, 1, len(path))
        ax.plot(t, path.detach().double().norm(dim=-1).cpu().numpy(), marker="o", label=name)
    if z_dim is not None:
        ax.axhline(math.sqrt(z_dim), color="k", linestyle="--", linewidth=0.8, label="sqrt(Z)")
    ax.set_xlabel("t")
    ax.set_ylabel("|z(t)|")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _finish(fig, save)


def show_interpolation(generator: nn.Module, paths: dict, save=None):
    """Renders of G along each latent path (name -> (T, Z)), one row per path."""
    rows = {name: _render(generate(generator, path)) for name, path in paths.items()}
    n_cols = max(len(images) for images in rows.values())
    fig, axes = plt.subplots(len(rows), n_cols, squeeze=False, figsize=(1.3 * n_cols + 0.6, 1.4 * len(rows)))
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(images[c])
        axes[r, 0].set_ylabel(name)
    fig.suptitle("latent walk z0 -> z1", fontsize=10)
    fig.tight_layout()
    return _finish(fig, save)


def export_samples(voxels: torch.Tensor, folder, suffix: str = ".obj") -> list:
    """Marching-cubes meshes (level 0.5) of each grid, written as ``sample_<i><suffix>`` in ``folder``.

    voxels: (N, 1, R, R, R) occupancy in [0, 1]. Grids without any cell above 0.5 are skipped.
    Returns the written paths.
    """
    from . import mesh

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, grid in enumerate(voxels):
        if float(grid.max()) <= 0.5:
            continue
        verts, faces = mesh.extract_mesh(grid[0])
        paths.append(mesh.export_mesh(verts, faces, folder / f"sample_{i}{suffix}"))
    return paths
