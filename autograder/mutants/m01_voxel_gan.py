"""Planted bugs and valid alternatives for topic 01_voxel_gan (see ``autograder/mutants/__init__.py``)."""
from __future__ import annotations

from autograder.mutants import Alternative, Mutant

_BN_FROZEN = '''    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm3d):
                module.eval()  # "frozen" BatchNorm, copied from fine-tuning code
        return self

    def forward('''

MUTANTS = [
    # ------------------------------------------------------------------ VoxelGenerator
    Mutant("tanh_output", "VoxelGenerator", "nn.Sigmoid(),", "nn.Tanh(),",
           caught_by=("VoxelGenerator.shape_range",), why="DCGAN image habit: tanh gives [-1, 1], not occupancy"),
    Mutant("no_sigmoid", "VoxelGenerator",
           "nn.ConvTranspose3d(channels, 1, kernel_size=4, stride=2, padding=1),\n            nn.Sigmoid(),",
           "nn.ConvTranspose3d(channels, 1, kernel_size=4, stride=2, padding=1),",
           caught_by=("VoxelGenerator.shape_range",), why="unbounded output, not an occupancy probability"),
    Mutant("block_does_not_upsample", "VoxelGenerator",
           "nn.ConvTranspose3d(channels, channels // 2, kernel_size=4, stride=2, padding=1, bias=False),",
           "nn.ConvTranspose3d(channels, channels // 2, kernel_size=3, stride=1, padding=1, bias=False),",
           caught_by=("VoxelGenerator.upsampling_stages", "VoxelGenerator.shape_range"),
           why="a 'same' transposed convolution keeps the resolution"),
    Mutant("batchnorm_eval_while_training", "VoxelGenerator", "    def forward(", _BN_FROZEN,
           caught_by=("VoxelGenerator.batchnorm_train",), why="BatchNorm left in eval mode while training"),
    Mutant("projection_skips_norm", "VoxelGenerator",
           "h = self.project(z.reshape(z.shape[0], -1, 1, 1, 1))",
           "h = self.project[0](z.reshape(z.shape[0], -1, 1, 1, 1))",
           caught_by=("VoxelGenerator.gradients", "VoxelGenerator.batchnorm_train"),
           why="a layer built in __init__ but never used in forward"),
    Mutant("detached_stage", "VoxelGenerator", "h = block(h)", "h = block(h.detach())",
           caught_by=("VoxelGenerator.gradients",), why="gradients stop at a block"),
    Mutant("channels_not_halved", "VoxelGenerator",
           "nn.ConvTranspose3d(channels, channels // 2, kernel_size=4, stride=2, padding=1, bias=False),\n"
           "                nn.BatchNorm3d(channels // 2),",
           "nn.ConvTranspose3d(channels, channels, kernel_size=4, stride=2, padding=1, bias=False),\n"
           "                nn.BatchNorm3d(channels),\n                nn.Conv3d(channels, channels // 2, 1),",
           caught_by=("VoxelGenerator.parameter_count", "VoxelGenerator.channels"),
           why="an extra 1x1 convolution: a wider network than the paper's"),
    Mutant("batchnorm_before_sigmoid", "VoxelGenerator",
           "nn.ConvTranspose3d(channels, 1, kernel_size=4, stride=2, padding=1),\n            nn.Sigmoid(),",
           "nn.ConvTranspose3d(channels, 1, kernel_size=4, stride=2, padding=1),\n            nn.BatchNorm3d(1),\n"
           "            nn.Sigmoid(),",
           caught_by=("VoxelGenerator.quality",),
           why="BatchNorm on the output pushes every batch towards 50% occupancy: only training shows it"),
    # ------------------------------------------------------------------ VoxelDiscriminator
    Mutant("sigmoid_output", "VoxelDiscriminator", "return self.to_logit(h).reshape(x.shape[0])",
           "return torch.sigmoid(self.to_logit(h)).reshape(x.shape[0])",
           caught_by=("VoxelDiscriminator.logits",), why="probabilities instead of logits"),
    Mutant("no_flatten", "VoxelDiscriminator", "return self.to_logit(h).reshape(x.shape[0])",
           "return self.to_logit(h)", caught_by=("VoxelDiscriminator.shape",), why="(B, 1, 1, 1, 1) not (B,)"),
    Mutant("does_not_downsample", "VoxelDiscriminator",
           "kernel_size=4, stride=2, padding=1, bias=stage == 0)",
           "kernel_size=3, stride=1, padding=1, bias=stage == 0)",
           caught_by=("VoxelDiscriminator.shape", "VoxelDiscriminator.downsampling_stages"),
           why="convolutions that keep the resolution"),
    Mutant("batchnorm_eval_while_training_d", "VoxelDiscriminator", "    def forward(", _BN_FROZEN,
           caught_by=("VoxelDiscriminator.batchnorm_train",), why="BatchNorm left in eval mode while training"),
    Mutant("detached_input_block", "VoxelDiscriminator", "h = block(h)", "h = block(h).detach()",
           caught_by=("VoxelDiscriminator.gradients",), why="gradients never reach G through D"),
    # ------------------------------------------------------------------ discriminator_loss
    Mutant("swapped_labels", "discriminator_loss",
           "real_loss = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))\n"
           "    fake_loss = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))",
           "real_loss = F.binary_cross_entropy_with_logits(real_logits, torch.zeros_like(real_logits))\n"
           "    fake_loss = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))",
           caught_by=("discriminator_loss.hand_cases", "discriminator_loss.matches_reference"),
           why="real labelled 0 and fake 1"),
    Mutant("soft_labels_above_one", "discriminator_loss", "torch.ones_like(real_logits)",
           "torch.full_like(real_logits, 1.2)",
           caught_by=("discriminator_loss.hand_cases", "discriminator_loss.matches_reference"),
           why="label smoothing the wrong way: targets above 1 make the loss unbounded below"),
    Mutant("average_of_terms", "discriminator_loss", "return real_loss + fake_loss",
           "return (real_loss + fake_loss) / 2",
           caught_by=("discriminator_loss.hand_cases", "discriminator_loss.matches_reference"),
           why="the docstring asks for the sum of the two means"),
    Mutant("unstable_log_sigmoid", "discriminator_loss", "return real_loss + fake_loss",
           "return -torch.log(torch.sigmoid(real_logits)).mean() - torch.log(1 - torch.sigmoid(fake_logits)).mean()",
           caught_by=("discriminator_loss.extreme_logits",), why="log(sigmoid(x)) is -inf for x = -1e4"),
    # ------------------------------------------------------------------ generator_loss
    Mutant("saturating_loss", "generator_loss",
           "return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))",
           "return -F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))",
           caught_by=("generator_loss.hand_cases", "generator_loss.non_saturating",
                      "generator_loss.matches_reference"),
           why="minimising log(1 - D(G(z))): no gradient when D wins"),
    Mutant("unstable_generator_loss", "generator_loss",
           "return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))",
           "return -torch.log(torch.sigmoid(fake_logits)).mean()",
           caught_by=("generator_loss.extreme_logits",), why="log(sigmoid(-1e4)) = -inf"),
    Mutant("generator_wrong_target", "generator_loss", "torch.ones_like(fake_logits)",
           "torch.zeros_like(fake_logits)",
           caught_by=("generator_loss.hand_cases", "generator_loss.non_saturating"),
           why="G trained to look fake"),
    Mutant("generator_sum", "generator_loss", "torch.ones_like(fake_logits))",
           "torch.ones_like(fake_logits), reduction=\"sum\")",
           caught_by=("generator_loss.hand_cases", "generator_loss.matches_reference"),
           why="a sum over the batch: the step size grows with B"),
    # ------------------------------------------------------------------ discriminator_accuracy
    Mutant("accuracy_wrong_side", "discriminator_accuracy",
           "correct = (real_logits > 0).sum() + (fake_logits < 0).sum()",
           "correct = (real_logits < 0).sum() + (fake_logits > 0).sum()",
           caught_by=("discriminator_accuracy.hand_cases", "discriminator_accuracy.matches_reference"),
           why="counts the wrong side: 1 - accuracy"),
    Mutant("accuracy_real_only", "discriminator_accuracy",
           "return float(correct) / (real_logits.numel() + fake_logits.numel())",
           "return float((real_logits > 0).float().mean())",
           caught_by=("discriminator_accuracy.hand_cases",), why="ignores the fake batch"),
    Mutant("accuracy_count", "discriminator_accuracy",
           "return float(correct) / (real_logits.numel() + fake_logits.numel())", "return float(correct)",
           caught_by=("discriminator_accuracy.hand_cases", "discriminator_accuracy.matches_reference"),
           why="a count, not a fraction"),
    # ------------------------------------------------------------------ should_update_discriminator
    Mutant("update_inverted", "should_update_discriminator", "float(accuracy) <= threshold",
           "float(accuracy) > threshold",
           caught_by=("should_update_discriminator.hand_cases", "should_update_discriminator.matches_reference"),
           why="updates D only when it is already winning"),
    Mutant("update_hard_coded", "should_update_discriminator", "float(accuracy) <= threshold",
           "float(accuracy) <= 0.8",
           caught_by=("should_update_discriminator.hand_cases", "should_update_discriminator.matches_reference"),
           why="ignores the threshold argument"),
    Mutant("update_always", "should_update_discriminator", "return bool(float(accuracy) <= threshold)",
           "return True", caught_by=("should_update_discriminator.hand_cases",), why="no adaptive rule"),
    # ------------------------------------------------------------------ interpolate_latents
    Mutant("lerp_for_slerp", "interpolate_latents", 'if mode == "lerp":', 'if mode in ("lerp", "slerp"):',
           caught_by=("interpolate_latents.geometry", "interpolate_latents.matches_reference"),
           why="lerp where slerp was asked"),
    Mutant("path_reversed", "interpolate_latents", "line = (1 - t) * z0 + t * z1", "line = t * z0 + (1 - t) * z1",
           caught_by=("interpolate_latents.endpoints",), why="the path runs from z1 to z0"),
    Mutant("angle_not_normalised", "interpolate_latents",
           "cos = (z0 * z1).sum(-1, keepdim=True) / (z0.norm(dim=-1, keepdim=True) * z1.norm(dim=-1, keepdim=True))",
           "cos = (z0 * z1).sum(-1, keepdim=True)",
           caught_by=("interpolate_latents.geometry", "interpolate_latents.matches_reference"),
           why="the dot product of unnormalised latents is not cos W"),
    Mutant("no_parallel_fallback", "interpolate_latents", "parallel = sin < SLERP_EPS", "parallel = sin < 0",
           caught_by=("interpolate_latents.parallel",), why="0 / 0 for parallel latents"),
]

ALTERNATIVES = [
    Alternative("softplus_discriminator_loss", "discriminator_loss", "return real_loss + fake_loss",
                "return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()",
                why="softplus form of the same cross-entropy"),
    Alternative("logsigmoid_discriminator_loss", "discriminator_loss", "return real_loss + fake_loss",
                "return -(F.logsigmoid(real_logits).mean() + F.logsigmoid(-fake_logits).mean())",
                why="log-sigmoid form"),
    Alternative("softplus_generator_loss", "generator_loss",
                "return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))",
                "return F.softplus(-fake_logits).mean()", why="softplus form"),
    Alternative("sigmoid_accuracy", "discriminator_accuracy",
                "correct = (real_logits > 0).sum() + (fake_logits < 0).sum()\n"
                "    return float(correct) / (real_logits.numel() + fake_logits.numel())",
                "right = torch.cat([torch.sigmoid(real_logits) > 0.5, torch.sigmoid(fake_logits) < 0.5])\n"
                "    return right.float().mean().item()", why="probabilities against 0.5, pooled mean"),
    Alternative("update_not_above", "should_update_discriminator", "return bool(float(accuracy) <= threshold)",
                "return not accuracy > threshold", why="the paper's wording, 'not higher than'"),
    Alternative("slerp_cosine_form", "interpolate_latents",
                "arc = (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / safe_sin  # (steps, ..., Z)",
                "arc = torch.cos(t * omega) * z0 + torch.sin(t * omega) * (z1 - torch.cos(omega) * z0) / safe_sin",
                why="sin((1-t)W) = sin W cos tW - cos W sin tW: the same path"),
    Alternative("slerp_atan2_angle", "interpolate_latents",
                "omega = torch.acos(cos.clamp(-1, 1))  # (..., 1)",
                "a, b = F.normalize(z0, dim=-1), F.normalize(z1, dim=-1)\n"
                "    omega = torch.atan2((b - (a * b).sum(-1, keepdim=True) * a).norm(dim=-1, keepdim=True),\n"
                "                        (a * b).sum(-1, keepdim=True))",
                why="the angle from atan2(sin, cos): better conditioned near 0 and pi"),
    Alternative("generator_with_biases", "VoxelGenerator", "padding=1, bias=False),", "padding=1, bias=True),",
                why="a redundant bias before BatchNorm changes nothing"),
    Alternative("discriminator_bn_everywhere", "VoxelDiscriminator", "if stage > 0:", "if True:",
                why="BatchNorm in the first block too (the issue's literal description)"),
]
