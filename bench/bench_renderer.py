"""Benchmark of topic 02's volume renderer (``make bench``; never a timed test).

1. ``volume_render`` forward + backward on a batch of 64 x 64 renders at 48 samples per ray: samples per
   second and peak memory, for the notebook's function (the reference, or a student's with --notebook)
   against two textbook formulations written here: the straightforward NeRF one (transmittance as an
   exclusive cumulative product of 1 - alpha + 1e-10) and the log-space one (exp of an exclusive
   cumulative sum of sigma * delta).
2. Chunked rendering of a 128 x 128 image through a pi-GAN field (``gen3d.hw_pigan.render_image``):
   time and peak memory for several chunk sizes, showing that memory stays bounded by the chunk.

Peak memory: what the code allocates above the starting point, at its peak: the CUDA allocator's
statistics on a GPU; on a CPU the allocations and frees recorded by the torch profiler, replayed in order.

    python bench/bench_renderer.py [--notebook solutions/02_pigan/pigan.ipynb] [--device cpu|cuda]
                                   [--batch 8] [--repeats 3] [--json results.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from gen3d import hw_pigan as hw  # noqa: E402
from gen3d.notebook import load_notebook, require  # noqa: E402

NAMES = ["get_rays", "stratified_depths", "volume_render", "hierarchical_depths", "FiLMSiren", "MappingNetwork",
         "look_at_origin"]


# ----------------------------------------------------------------------------- baselines
def render_nerf_cumprod(sigma, rgb, depths, white_background=False):
    """NeRF's original compositing: T = exclusive cumprod(1 - alpha + 1e-10)."""
    deltas = torch.cat([depths[..., 1:] - depths[..., :-1], torch.full_like(depths[..., :1], 1e10)], -1)
    alpha = 1.0 - torch.exp(-sigma * deltas)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1.0 - alpha + 1e-10], -1), -1)[..., :-1]
    weights = alpha * trans
    color = (weights[..., None] * rgb).sum(-2)
    opacity = weights.sum(-1)
    if white_background:
        color = color + (1.0 - opacity)[..., None]
    return color, (weights * depths).sum(-1), weights, opacity


def render_log_space(sigma, rgb, depths, white_background=False):
    """Log-space compositing: T_i = exp(-sum_{j<i} sigma_j delta_j) (one cumsum, no product)."""
    deltas = torch.cat([depths[..., 1:] - depths[..., :-1], torch.full_like(depths[..., :1], 1e10)], -1)
    tau = sigma * deltas
    trans = torch.exp(-torch.cat([torch.zeros_like(tau[..., :1]), torch.cumsum(tau[..., :-1], -1)], -1))
    weights = trans * (1.0 - torch.exp(-tau))
    color = (weights[..., None] * rgb).sum(-2)
    opacity = weights.sum(-1)
    if white_background:
        color = color + (1.0 - opacity)[..., None]
    return color, (weights * depths).sum(-1), weights, opacity


# ----------------------------------------------------------------------------- measuring
def peak_memory_mb(fn, device: torch.device) -> float:
    """Peak memory (MiB) that ``fn()`` allocates above what was allocated before it ran.

    CUDA: the caching allocator's peak. CPU: replays the allocations and frees that the torch profiler
    records (``profile_memory=True``) in time order; the allocator's caching does not hide them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - start) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage  # allocations minus frees inside this op (or a free event)
        peak = max(peak, live)
    return peak / 2**20


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_volume_render(fn, batch: int, size: int, n_samples: int, device, repeats: int) -> dict:
    """Forward + backward of ``fn`` on (batch, size, size, n_samples) samples: samples/s and peak memory."""
    g = torch.Generator().manual_seed(0)
    shape = (batch, size, size, n_samples)
    sigma = (torch.rand(shape, generator=g) * 5).to(device).requires_grad_(True)
    rgb = torch.rand(shape + (3,), generator=g).to(device).requires_grad_(True)
    depths = torch.sort(1.8 + 2.4 * torch.rand(shape, generator=g), -1).values.to(device)

    def step():
        color, depth, weights, opacity = fn(sigma, rgb, depths, True)
        (color.sum() + depth.sum() + opacity.sum()).backward()
        sigma.grad = rgb.grad = None

    step()  # warm-up
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    best = min(times)
    return {"samples_per_s": sigma.numel() / best, "seconds": best, "peak_mb": peak_memory_mb(step, device)}


def bench_chunked(ns, device, size: int, chunks, repeats: int) -> list:
    """Render one size x size image of a small pi-GAN field (no gradient) with several chunk sizes."""
    cfg = hw.PiGANConfig(image_size=size, z_dim=64, hidden=64, n_siren=4, mapping_hidden=64, n_coarse=24, n_fine=24)
    torch.manual_seed(0)
    field = hw.SirenField(ns.FiLMSiren, ns.MappingNetwork, cfg.z_dim, cfg.hidden, cfg.n_siren, cfg.mapping_hidden)
    gen = hw.Generator(field, hw.Renderer.from_namespace(ns), cfg).to(device)
    z = torch.randn(1, cfg.z_dim).to(device)
    c2w = ns.look_at_origin(torch.tensor([0.5]), torch.tensor([0.3]), cfg.radius).to(device)
    rows, reference = [], None
    for chunk in chunks:
        def render():
            return hw.render_image(gen, z, c2w, size=size, chunk_rays=chunk)["image"]

        hw.render_image(gen, z, c2w, size=16, chunk_rays=chunk)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            image = render()
            _sync(device)
            times.append(time.perf_counter() - start)
        reference = image if reference is None else reference
        rows.append({"chunk_rays": chunk, "seconds": min(times), "peak_mb": peak_memory_mb(render, device),
                     "max_diff_vs_first": float((image - reference).abs().max())})
    return rows


def main(argv=()) -> int:
    """Print the figures (``python -m bench renderer`` calls this with the defaults)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notebook", default=str(REPO / "solutions" / "02_pigan" / "pigan.ipynb"))
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda if available)")
    parser.add_argument("--batch", type=int, default=8, help="64 x 64 renders per batch")
    parser.add_argument("--samples", type=int, default=48, help="samples per ray")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunked-size", type=int, default=128)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(list(argv))
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    ns = load_notebook(args.notebook, names=NAMES)
    require(ns, NAMES)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; notebook {args.notebook}")

    results = {"device": str(device), "volume_render": {}, "chunked": []}
    print(f"\nvolume_render forward + backward, {args.batch} x 64 x 64 rays x {args.samples} samples")
    for name, fn in (("notebook", ns.volume_render), ("nerf_cumprod", render_nerf_cumprod),
                     ("log_space", render_log_space)):
        row = bench_volume_render(fn, args.batch, 64, args.samples, device, args.repeats)
        results["volume_render"][name] = row
        print(f"  {name:>13}: {row['samples_per_s'] / 1e6:8.2f} M samples/s  {row['seconds'] * 1e3:8.1f} ms  "
              f"peak {row['peak_mb']:8.1f} MiB")

    chunks = [1024, 4096, 16384]
    print(f"\nchunked rendering of a {args.chunked_size} x {args.chunked_size} image (24 + 24 samples per ray, no grad)")
    results["chunked"] = bench_chunked(ns, device, args.chunked_size, chunks, args.repeats)
    for row in results["chunked"]:
        print(f"  chunk {row['chunk_rays']:6d} rays: {row['seconds']:7.2f} s  peak {row['peak_mb']:8.1f} MiB  "
              f"max |difference| {row['max_diff_vs_first']:.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
