"""Unit tests of gen3d.hw_vq_prior (the plumbing of topic 03): loops, decoding, scores, masks, plots.

The models here are tiny stand-ins with the notebook's interface, never the graded solution.
"""
from __future__ import annotations

import dataclasses

import matplotlib
import pytest
import torch
import torch.nn.functional as F
from torch import nn

matplotlib.use("Agg")

from gen3d import hw_vq_prior as hw  # noqa: E402

R, F_, K, C = 8, 4, 6, 3  # 8^3 voxels -> 2^3 = 8 tokens


class Quantizer(nn.Module):
    """Nearest code, straight-through; ``usage`` buffer like the notebook's (no restarts)."""

    def __init__(self):
        super().__init__()
        self.num_codes = K
        self.codebook = nn.Embedding(K, C)
        self.register_buffer("usage", torch.ones(K))

    def forward(self, z_e):
        b, c, d, h, w = z_e.shape
        z = z_e.permute(0, 2, 3, 4, 1).reshape(-1, c)  # (N, C)
        idx = torch.cdist(z.detach(), self.codebook.weight.detach()).argmin(1)
        e = self.codebook(idx)
        loss = F.mse_loss(e, z.detach()) + 0.25 * F.mse_loss(z, e.detach())
        z_q = (z + (e - z).detach()).reshape(b, d, h, w, c).permute(0, 4, 1, 2, 3)
        return z_q, idx.reshape(b, d, h, w), loss


class TinyVQVAE(nn.Module):
    """(B, 1, 8, 8, 8) -> 2^3 codes -> logits, through average pooling and a linear upsampling."""

    def __init__(self):
        super().__init__()
        self.num_codes = K
        self.encoder = nn.Sequential(nn.AvgPool3d(F_), nn.Conv3d(1, C, 1))
        self.quantizer = Quantizer()
        self.decoder = nn.Sequential(nn.Conv3d(C, 1, 1), nn.Upsample(scale_factor=F_))

    def forward(self, x):
        z_q, idx, loss = self.quantizer(self.encoder(x))
        return self.decoder(z_q), idx, loss

    def encode(self, x):
        return self.quantizer(self.encoder(x))[1]

    def decode_indices(self, idx):
        return self.decoder(self.quantizer.codebook(idx).permute(0, 4, 1, 2, 3))


class BigramPrior(nn.Module):
    """logits[:, t] = table[t, previous token] (row V = the start token)."""

    def __init__(self, vocab=K, seq_len=(R // F_) ** 3):
        super().__init__()
        self.vocab_size, self.seq_len = vocab, seq_len
        self.table = nn.Parameter(torch.zeros(seq_len, vocab + 1, vocab))

    def forward(self, tokens):
        b, length = tokens.shape
        prev = torch.cat([torch.full((b, 1), self.vocab_size, dtype=torch.long), tokens[:, :-1]], 1)
        return self.table[torch.arange(length)[None].expand(b, -1), prev]  # (B, L, V)


def boxes(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(n, 1, R, R, R)
    for i in range(n):
        lo = torch.randint(0, R // 2, (3,), generator=g)
        hi = lo + torch.randint(2, R // 2 + 1, (3,), generator=g)
        out[i, 0, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = 1
    return out


def cfg(**changes):
    base = dict(resolution=R, factor=F_, num_codes=K, code_dim=C, vq_batch=4, vq_steps=6, eval_every=3, n_eval=4,
                prior_batch=4, prior_steps=6, n_samples=4)
    base.update(changes)
    return dataclasses.replace(hw.SMOKE, **base)


def test_presets_are_consistent():
    for preset in (hw.SMOKE, hw.SMALL, hw.FULL, hw.GRADER):
        assert preset.resolution % preset.factor == 0
        assert preset.prior_dim % preset.prior_heads == 0
    assert hw.GRADER.resolution == 16 and hw.GRADER.eval_every == 0  # the judges load 16^3 held-out shapes


def test_load_shapes():
    shapes = hw.load_shapes(16, "test")
    assert shapes.voxels.shape[1:] == (1, 16, 16, 16) and shapes.voxels.dtype == torch.float32
    assert set(shapes.voxels.unique().tolist()) <= {0.0, 1.0}
    assert len(shapes.labels) == len(shapes.voxels) and len(hw.category_names()) >= 5


def test_train_vqvae_history_and_eval_mode():
    torch.manual_seed(0)
    model = TinyVQVAE()
    history = hw.train_vqvae(model, boxes(12), cfg(), held_out=boxes(4, 1), progress=False)
    assert len(history["loss"]) == 6 and len(history["batch_perplexity"]) == 6
    assert history["eval_steps"] == [3, 6] and len(history["iou"]) == 2
    assert all(0 <= v <= 1 for v in history["iou"]) and all(1 <= v <= K for v in history["perplexity"])
    assert not model.training  # left frozen for encoding


def test_train_vqvae_uses_the_given_perplexity():
    calls = []

    def perplexity(indices, num_codes):
        calls.append((tuple(indices.shape), num_codes))
        return 2.0

    history = hw.train_vqvae(TinyVQVAE(), boxes(8), cfg(vq_steps=2, eval_every=0), held_out=boxes(4, 1),
                             perplexity=perplexity, progress=False)
    assert calls == [((4, 2, 2, 2), K)] and history["perplexity"] == [2.0]


def test_reconstruct_restores_mode():
    model = TinyVQVAE().train()
    probs, idx = hw.reconstruct(model, boxes(5), batch_size=2)
    assert probs.shape == (5, 1, R, R, R) and idx.shape == (5, 2, 2, 2)
    assert float(probs.min()) >= 0 and float(probs.max()) <= 1 and model.training


def test_train_prior_learns_a_constant_sequence():
    tokens = torch.tensor([[1, 2, 3, 4, 5, 0, 1, 2]]).repeat(16, 1)
    prior = BigramPrior()
    before = hw.token_nll_bits(prior, tokens)
    history = hw.train_prior(prior, tokens, cfg(prior_steps=60, prior_lr=0.1), held_out=tokens, progress=False)
    assert len(history["loss"]) == 60 and history["val_bits"][-1] < 0.5 * before
    assert before == pytest.approx(8 * torch.log2(torch.tensor(float(K))).item(), rel=1e-5)  # uniform: T log2 V


def test_decode_tokens_shapes_and_range():
    model = TinyVQVAE()
    out = hw.decode_tokens(model, torch.randint(0, K, (3, 8)))
    assert out.shape == (3, 1, R, R, R) and float(out.min()) >= 0 and float(out.max()) <= 1
    with pytest.raises(ValueError):
        hw.decode_tokens(model, torch.zeros(2, 7, dtype=torch.long))


def test_score_samples_identical_sets():
    shapes = boxes(6)
    scores = hw.score_samples(shapes, shapes)
    assert scores["coverage"] == 1.0 and scores["mmd"] == pytest.approx(0.0)


def test_back_half_mask_and_voxel_region():
    mask = hw.back_half_mask(64)
    assert mask.sum() == 32 and mask[:32].all() and not mask[32:].any()
    region = hw._token_region_to_voxels(mask, 16)[0, 0]  # (z, y, x)
    assert region[:8].all() and not region[8:].any()  # raster order: the first half is small z


def test_code_interpolation_endpoints():
    torch.manual_seed(1)
    model = TinyVQVAE()
    a, b = boxes(1, 2), boxes(1, 3)
    mixes, blends = hw.code_interpolation(model, a, b, steps=4)
    assert mixes.shape == blends.shape == (4, 1, R, R, R)
    with torch.no_grad():
        want_a = torch.sigmoid(model.decode_indices(model.encode(a)))
        want_b = torch.sigmoid(model.decode_indices(model.encode(b)))
    for rows in (mixes, blends):
        assert torch.allclose(rows[0], want_a[0], atol=1e-6) and torch.allclose(rows[-1], want_b[0], atol=1e-6)


def test_plots_write_files(tmp_path):
    model = TinyVQVAE()
    history = hw.train_vqvae(model, boxes(8), cfg(), held_out=boxes(4, 1), progress=False)
    hw.plot_vq_training(history, K, save=tmp_path / "vq.png")
    hw.show_reconstructions(model, boxes(3), save=tmp_path / "recon.png")
    prior = BigramPrior()
    prior_history = hw.train_prior(prior, torch.randint(0, K, (8, 8)), cfg(), held_out=torch.randint(0, K, (4, 8)),
                                   progress=False)
    hw.plot_prior_training(prior_history, save=tmp_path / "prior.png")

    def sampler(prior, n, temperature=1.0, top_k=None, generator=None):
        return torch.randint(0, K, (n, 8), generator=generator)

    hw.show_temperatures(prior, model, sampler, (0.5, 1.0), n=3, save=tmp_path / "tau.png")
    targets = boxes(2)
    known = hw.back_half_mask(8)
    hw.show_completions(targets, model, torch.randint(0, K, (2, 8)), known, [boxes(2, 5)], save=tmp_path / "c.png")
    hw.show_code_interpolation(model, boxes(1), boxes(1, 1), steps=3, save=tmp_path / "i.png")
    hw.show_shapes(boxes(4), save=tmp_path / "s.png")
    for name in ("vq", "recon", "prior", "tau", "c", "i", "s"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0
