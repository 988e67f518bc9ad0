"""Planted bugs and valid alternatives for topic 05 (SDS). See ``autograder/mutants/__init__.py``."""
from __future__ import annotations

from autograder.mutants import Alternative, Mutant

_NO_GRAD_BLOCK = """\
    with torch.no_grad():
        alpha_bar = extract(schedule.alphas_cumprod, t, images)                          # (B, 1, 1, 1)
        x_t = alpha_bar.sqrt() * images + (1 - alpha_bar).sqrt() * noise
        if guidance_scale == 1.0 or cond is None or cond.get("label") is None:
            eps_hat = eps_model(x_t, t, cond)
        else:
            uncond = {**cond, "label": torch.full_like(cond["label"], NULL_LABEL)}
            both = {key: torch.cat([cond[key], uncond[key]]) for key in cond}              # each (2B, ...)
            eps_cond, eps_uncond = eps_model(torch.cat([x_t, x_t]), torch.cat([t, t]), both).chunk(2)
            eps_hat = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
    # 3. the SDS gradient w(t) (eps_hat - eps), handed to autograd through a detached target
    w = sds_weight(t, schedule, weighting).to(images.dtype)[:, None, None, None]           # (B, 1, 1, 1)
    grad = w * (eps_hat - noise)
    target = (images - grad).detach()
    return 0.5 * ((images - target) ** 2).sum() / batch"""

_THROUGH_UNET_BLOCK = """\
    alpha_bar = extract(schedule.alphas_cumprod, t, images)
    x_t = alpha_bar.sqrt() * images + (1 - alpha_bar).sqrt() * noise
    if guidance_scale == 1.0 or cond is None or cond.get("label") is None:
        eps_hat = eps_model(x_t, t, cond)
    else:
        uncond = {**cond, "label": torch.full_like(cond["label"], NULL_LABEL)}
        both = {key: torch.cat([cond[key], uncond[key]]) for key in cond}
        eps_cond, eps_uncond = eps_model(torch.cat([x_t, x_t]), torch.cat([t, t]), both).chunk(2)
        eps_hat = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
    w = sds_weight(t, schedule, weighting).to(images.dtype)[:, None, None, None]
    return 0.5 * (w * (eps_hat - noise) ** 2).sum() / batch"""

MUTANTS = [
    # ------------------------------------------------------------------ sds_timestep
    Mutant("t_whole_range", "sds_timestep",
           old="t = torch.randint(t_min, t_max + 1, (batch,), generator=generator)",
           new="t = torch.randint(0, num_timesteps, (batch,), generator=generator)",
           caught_by=("sds_timestep.range", "sds_timestep.reference"),
           why="t sampled over the whole range 0 .. T - 1 instead of DreamFusion's [0.02 T, 0.98 T]"),
    Mutant("t_max_exclusive", "sds_timestep",
           old="t = torch.randint(t_min, t_max + 1, (batch,), generator=generator)",
           new="t = torch.randint(t_min, t_max, (batch,), generator=generator)",
           caught_by=("sds_timestep.range", "sds_timestep.reference"),
           why="torch.randint's upper bound is exclusive: t_max is never drawn"),
    Mutant("t_ignores_generator", "sds_timestep",
           old="t = torch.randint(t_min, t_max + 1, (batch,), generator=generator)",
           new="t = torch.randint(t_min, t_max + 1, (batch,))",
           caught_by=("sds_timestep.generator", "sds_timestep.reference"),
           why="torch's global generator: SDS runs are not reproducible"),
    Mutant("t_rounded_bounds", "sds_timestep",
           old="t_min = int(math.floor(low * num_timesteps))",
           new="t_min = int(math.ceil(low * num_timesteps)) + 1",
           caught_by=("sds_timestep.range",),
           why="the lower end of the range is off"),
    # ------------------------------------------------------------------ sds_weight
    Mutant("weight_alpha_bar", "sds_weight",
           old="    return 1 - alphas_cumprod\n", new="    return alphas_cumprod\n",
           caught_by=("sds_weight.value", "sds_weight.reference"),
           why="alpha_bar_t instead of sigma_t^2 = 1 - alpha_bar_t: weights the nearly clean images most"),
    Mutant("weight_sqrt", "sds_weight",
           old="    return 1 - alphas_cumprod\n", new="    return (1 - alphas_cumprod).sqrt()\n",
           caught_by=("sds_weight.value", "sds_weight.reference"),
           why="sigma_t instead of sigma_t^2"),
    Mutant("weight_off_by_one", "sds_weight",
           old="alphas_cumprod = schedule.alphas_cumprod.to(t.device)[t]",
           new="alphas_cumprod = schedule.alphas_cumprod.to(t.device)[(t - 1).clamp(min=0)]",
           caught_by=("sds_weight.value", "sds_weight.reference"),
           why="1-based timesteps: alphas_cumprod indexed with t - 1"),
    Mutant("weight_uniform_ignored", "sds_weight",
           old='    if kind == "uniform":\n', new='    if kind == "constant":\n',
           caught_by=("sds_weight.value",),
           why="kind='uniform' returns the SDS weight"),
    # ------------------------------------------------------------------ sds_loss (the planted bugs)
    Mutant("grad_through_unet", "sds_loss",
           old=_NO_GRAD_BLOCK, new=_THROUGH_UNET_BLOCK,
           caught_by=("sds_loss.gradient", "sds_loss.no_unet_grad"),
           why="the plain diffusion loss w(t) ||eps_hat - eps||^2 differentiated through the U-Net (DreamFusion's "
               "point: drop the U-Net Jacobian)"),
    Mutant("sign_flipped", "sds_loss",
           old="    target = (images - grad).detach()", new="    target = (images + grad).detach()",
           caught_by=("sds_loss.gradient", "sds_loss.reference"),
           why="descends +w (eps - eps_hat): pushes the renders away from the prior"),
    Mutant("weight_missing", "sds_loss",
           old="grad = w * (eps_hat - noise)", new="grad = eps_hat - noise",
           caught_by=("sds_loss.gradient", "sds_loss.reference"),
           why="w(t) dropped: every noise level counts the same"),
    Mutant("t_over_whole_range", "sds_loss",
           old="t = sds_timestep(batch, schedule.num_timesteps, t_range, generator, images.device)",
           new="t = sds_timestep(batch, schedule.num_timesteps, (0.0, 1.0), generator, images.device)",
           caught_by=("sds_loss.timesteps", "sds_loss.reference"),
           why="t sampled over the whole range, ignoring t_range"),
    Mutant("guidance_wrong_branch", "sds_loss",
           old="eps_hat = eps_uncond + guidance_scale * (eps_cond - eps_uncond)",
           new="eps_hat = eps_cond + guidance_scale * (eps_uncond - eps_cond)",
           caught_by=("sds_loss.gradient", "sds_loss.reference"),
           why="classifier-free guidance extrapolates away from the condition"),
    Mutant("noise_redrawn", "sds_loss",
           old="grad = w * (eps_hat - noise)", new="grad = w * (eps_hat - randn(images.shape, generator, like=images))",
           caught_by=("sds_loss.gradient", "sds_loss.reference"),
           why="the residual subtracts a fresh noise draw, not the eps that made x_t: pure noise added to the gradient"),
    Mutant("no_batch_mean", "sds_loss",
           old="return 0.5 * ((images - target) ** 2).sum() / batch",
           new="return 0.5 * ((images - target) ** 2).sum()",
           caught_by=("sds_loss.gradient", "sds_loss.reference"),
           why="the documented reduction is a sum over pixels and a MEAN over the batch"),
    Mutant("view_dropped_in_uncond", "sds_loss",
           old='uncond = {**cond, "label": torch.full_like(cond["label"], NULL_LABEL)}',
           new='uncond = {"label": torch.full_like(cond["label"], NULL_LABEL), '
               '"view": torch.zeros_like(cond["view"])}',
           caught_by=("sds_loss.gradient", "sds_loss.reference"),
           why="the unconditional branch must keep the camera (only the label is dropped)"),
    Mutant("every_view_called_front", "sds_loss",
           old="    # 2. the guided noise estimate of the frozen prior, outside autograd\n",
           new="    # 2. the guided noise estimate of the frozen prior, outside autograd\n"
               "    if cond is not None and cond.get(\"view\") is not None:\n"
               "        cond = {**cond, \"view\": torch.zeros_like(cond[\"view\"])}\n",
           caught_by=("sds_loss.gradient", "sds_loss.reference"),
           why="the prior is told that every render is the front view: the Janus problem comes back even with "
               "the view-aware prior (with the small priors, sds_quality sees Janus score 1.00 instead of 0.00)"),
    # ------------------------------------------------------------------ view_condition
    Mutant("not_wrapped", "view_condition",
           old="wrapped = torch.atan2(torch.sin(azimuth), torch.cos(azimuth))", new="wrapped = azimuth",
           caught_by=("view_condition.buckets", "view_condition.reference"),
           why="azimuth 2 pi + 0.1 is a front view; compare angles after wrapping"),
    Mutant("overhead_overwritten", "view_condition",
           old="    bucket = torch.where(elevation > OVERHEAD_ELEVATION, torch.full_like(bucket, 3), bucket)\n",
           new="",
           caught_by=("view_condition.buckets", "view_condition.reference"),
           why="no overhead bucket"),
    Mutant("front_back_swapped", "view_condition",
           old="torch.where(wrapped.abs() < FRONT_HALF_ANGLE, torch.zeros_like(bucket), bucket)",
           new="torch.where(wrapped.abs() < FRONT_HALF_ANGLE, torch.full_like(bucket, 2), bucket)",
           caught_by=("view_condition.buckets", "view_condition.reference"),
           why="azimuth 0 is the FRONT of the object (gen3d convention)"),
    Mutant("view_degrees", "view_condition",
           old="torch.stack([wrapped, elevation], dim=-1)", new="torch.stack([torch.rad2deg(wrapped), elevation], dim=-1)",
           caught_by=("view_condition.buckets", "view_condition.reference"),
           why="the prior's view is in radians"),
    # ------------------------------------------------------------------ random_sds_cameras
    Mutant("half_circle", "random_sds_cameras",
           old="azimuth = (2 * torch.rand(batch, generator=generator) - 1) * math.pi",
           new="azimuth = torch.rand(batch, generator=generator) * math.pi",
           caught_by=("random_sds_cameras.distribution", "random_sds_cameras.reference"),
           why="cameras only on one side: the back is never seen (and never optimised)"),
    Mutant("draw_order", "random_sds_cameras",
           old="    azimuth = (2 * torch.rand(batch, generator=generator) - 1) * math.pi                # (B,) U(-pi, pi)\n"
               "    elevation = low + (high - low) * torch.rand(batch, generator=generator)             # (B,)\n",
           new="    elevation = low + (high - low) * torch.rand(batch, generator=generator)             # (B,)\n"
               "    azimuth = (2 * torch.rand(batch, generator=generator) - 1) * math.pi                # (B,) U(-pi, pi)\n",
           caught_by=("random_sds_cameras.reference",),
           why="elevations drawn before azimuths: valid cameras, but not the documented draw order"),
    Mutant("cams_ignore_generator", "random_sds_cameras",
           old="elevation = low + (high - low) * torch.rand(batch, generator=generator)",
           new="elevation = low + (high - low) * torch.rand(batch)",
           caught_by=("random_sds_cameras.generator", "random_sds_cameras.reference"),
           why="the elevations ignore the generator"),
    Mutant("elevation_unscaled", "random_sds_cameras",
           old="elevation = low + (high - low) * torch.rand(batch, generator=generator)",
           new="elevation = low + torch.rand(batch, generator=generator)",
           caught_by=("random_sds_cameras.distribution", "random_sds_cameras.reference"),
           why="elevations not scaled to the range"),
    # ------------------------------------------------------------------ query_voxels
    Mutant("align_corners", "query_voxels",
           old='coords, mode="bilinear", padding_mode="border", align_corners=False)',
           new='coords, mode="bilinear", padding_mode="border", align_corners=True)',
           caught_by=("query_voxels.analytic", "query_voxels.reference"),
           why="voxel centres at the cube's faces: the grid is stretched by R / (R - 1)"),
    Mutant("xyz_as_dhw", "query_voxels",
           old="coords = points.reshape(1, -1, 1, 1, 3)", new="coords = points.flip(-1).reshape(1, -1, 1, 1, 3)",
           caught_by=("query_voxels.analytic", "query_voxels.reference"),
           why="points passed as (z, y, x): grid_sample's last dimension is (x, y, z)"),
    Mutant("no_outside_mask", "query_voxels",
           old="sigma = F.softplus(values[..., 0]) * inside.to(points.dtype)", new="sigma = F.softplus(values[..., 0])",
           caught_by=("query_voxels.analytic", "query_voxels.reference"),
           why="the border padding extends the grid's density to infinity"),
    Mutant("relu_density", "query_voxels",
           old="sigma = F.softplus(values[..., 0])", new="sigma = F.relu(values[..., 0])",
           caught_by=("query_voxels.analytic", "query_voxels.reference"),
           why="relu density: a dead voxel never comes back (and the docstring says softplus)"),
]

ALTERNATIVES = [
    Alternative("mse_sum", "sds_loss",
                old="return 0.5 * ((images - target) ** 2).sum() / batch",
                new="return 0.5 * F.mse_loss(images, target, reduction='sum') / batch",
                why="threestudio's spelling of the same loss"),
    Alternative("detach_instead_of_no_grad", "sds_loss",
                old="    with torch.no_grad():\n        alpha_bar",
                new="    if True:\n        alpha_bar",
                why="without no_grad the graph through the U-Net is built but never used: the target is detached"),
    Alternative("two_calls", "sds_loss",
                old="            eps_cond, eps_uncond = eps_model(torch.cat([x_t, x_t]), torch.cat([t, t]), both).chunk(2)\n",
                new="            eps_cond = eps_model(x_t, t, cond)\n            eps_uncond = eps_model(x_t, t, uncond)\n",
                why="two calls instead of one batched call: the same numbers"),
    Alternative("bucket_masks", "view_condition",
                old="    bucket = torch.ones_like(azimuth, dtype=torch.long)                                 # side\n",
                new="    bucket = torch.ones(azimuth.shape, dtype=torch.long, device=azimuth.device)        # side\n",
                why="torch.ones with explicit device"),
    Alternative("angles_on_device", "random_sds_cameras",
                old="    azimuth, elevation = azimuth.to(device), elevation.to(device)\n",
                new="    azimuth, elevation = azimuth.to(device=device), elevation.to(device=device)\n",
                why="same thing, keyword spelling"),
    Alternative("separate_samples", "query_voxels",
                old="    sigma = F.softplus(values[..., 0]) * inside.to(points.dtype)\n",
                new="    sigma = torch.where(inside, F.softplus(values[..., 0]), torch.zeros_like(values[..., 0]))\n",
                why="masking with torch.where"),
]
