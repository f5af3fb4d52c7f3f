"""Batched image augmentations in plain torch, on the device the batch lives on.

Each transform draws its per-image parameters from a ``torch.Generator`` on the batch's device
(or a :class:`RowGenerator`), so a seeded generator reproduces the same augmented batch; no
torchvision needed. Images are ``(N, C, H, W)`` float tensors in [0, 1].
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL and torchvision use


class RowGenerator:
    """A ``torch.Generator`` seen from this rank's rows of a batch split over ranks.

    Every rank draws the numbers of the whole batch (``total`` rows, the same on every rank)
    in the same order and keeps those of its ``rows`` (global row indices), so an image gets
    the same augmentation however the batch is split: a run on N ranks draws what one process
    draws for the concatenated batch. ``rows=None`` is the whole batch on one process.
    """

    def __init__(self, generator, rows=None, total=None):
        self.generator, self.rows, self.total = generator, rows, total

    def repeated(self, times):
        """The view of a batch made of ``times`` stacked copies of this one (``x.repeat``)."""
        if self.rows is None:
            return self
        rows = torch.cat([self.rows + copy * self.total for copy in range(times)])
        return RowGenerator(self.generator, rows, self.total * times)


def _rand(n, generator, device, *tail):
    """``torch.rand(n, *tail)`` for the n images of a batch, from a generator or a RowGenerator."""
    if isinstance(generator, RowGenerator):
        if generator.rows is not None:
            if n != len(generator.rows):
                raise ValueError(f"a batch of {n} images was augmented with a RowGenerator for "
                                 f"{len(generator.rows)} rows")
            every_row = torch.rand(generator.total, *tail, generator=generator.generator, device=device)
            return every_row[generator.rows.to(device)]
        generator = generator.generator
    return torch.rand(n, *tail, generator=generator, device=device)


def _uniform(n, low, high, generator, device, *tail):
    return _rand(n, generator, device, *tail) * (high - low) + low


def _chosen(n, p, generator, device):
    """(n,) bool: which images a transform applied with probability p touches."""
    return _rand(n, generator, device) < p


def _per_image(mask):
    return mask.view(-1, 1, 1, 1)


def random_resized_crop(x, generator, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)):
    """Crops a random area fraction ``scale`` of aspect ratio ``ratio`` (log-uniform) from each
    image and resizes it back to the input size (bilinear), as torchvision's RandomResizedCrop
    but with the crop clipped to fit instead of retried."""
    n, device = x.shape[0], x.device
    area = _uniform(n, *scale, generator, device)
    log_ratio = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), generator, device)
    aspect = torch.exp(log_ratio)
    # Crop width and height as fractions of the image side, clipped to the image.
    w = torch.sqrt(area * aspect).clamp(max=1.0)
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (_rand(n, generator, device) * 2 - 1) * (1 - w)
    cy = (_rand(n, generator, device) * 2 - 1) * (1 - h)
    theta = torch.zeros(n, 2, 3, device=device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_affine(x, generator, degrees=10.0, translate=0.1, scale=(0.95, 1.05)):
    """Rotation by up to ``degrees``, shift by up to ``translate`` of the side and zoom in
    ``scale``, per image (the augmentation of DAC's own MNIST code); borders are filled with
    zeros (background)."""
    n, device = x.shape[0], x.device
    angle = _uniform(n, -degrees, degrees, generator, device) * (math.pi / 180)
    zoom = _uniform(n, *scale, generator, device)
    shift = _uniform(n, -2 * translate, 2 * translate, generator, device, 2)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # theta maps output to input coordinates in [-1, 1]: inverse rotation and zoom, then shift.
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def horizontal_flip(x, generator, p=0.5):
    return torch.where(_per_image(_chosen(x.shape[0], p, generator, x.device)), x.flip(-1), x)


def grayscale(x):
    """Luma replicated over the channels (a no-op on 1-channel images)."""
    if x.shape[1] != 3:
        return x
    luma = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * luma).sum(dim=1, keepdim=True).expand_as(x)


def random_grayscale(x, generator, p=0.2):
    return torch.where(_per_image(_chosen(x.shape[0], p, generator, x.device)), grayscale(x), x)


def color_jitter(x, generator, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=0.8):
    """Brightness, contrast and saturation factors uniform in [1 - s, 1 + s], hue rotated by up
    to ``hue`` turns in YIQ space; applied in that fixed order to a random fraction p of the
    images. Saturation and hue leave 1-channel images unchanged."""
    n, device = x.shape[0], x.device
    apply = _per_image(_chosen(n, p, generator, device))

    def factor(s):
        return _per_image(_uniform(n, 1 - s, 1 + s, generator, device)).to(x.dtype)

    out = x * factor(brightness)
    mean = grayscale(out).mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * factor(contrast) + mean
    if x.shape[1] == 3:
        gray = grayscale(out)
        out = (out - gray) * factor(saturation) + gray
        out = _rotate_hue(out, _uniform(n, -hue, hue, generator, device) * 2 * math.pi)
    return torch.where(apply, out.clamp(0, 1), x)


def _rotate_hue(x, angle):
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          device=x.device, dtype=x.dtype)
    cos, sin = torch.cos(angle).to(x.dtype), torch.sin(angle).to(x.dtype)
    rotation = torch.zeros(x.shape[0], 3, 3, device=x.device, dtype=x.dtype)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = cos, -sin, sin, cos
    matrix = torch.linalg.inv(to_yiq) @ rotation @ to_yiq  # (n, 3, 3)
    return torch.einsum("nij,njhw->nihw", matrix, x)


def gaussian_blur(x, generator, sigma=(0.1, 2.0), p=0.5, kernel_fraction=0.1):
    """Separable Gaussian blur with a per-image sigma (in pixels) uniform in ``sigma``; the
    kernel spans about ``kernel_fraction`` of the image side (odd, at least 3), as SimCLR."""
    n, c, h, w = x.shape
    device = x.device
    size = max(3, int(kernel_fraction * min(h, w)) // 2 * 2 + 1)
    sigmas = _uniform(n, *sigma, generator, device)
    offsets = torch.arange(size, device=device, dtype=x.dtype) - size // 2
    kernels = torch.exp(-offsets[None] ** 2 / (2 * sigmas[:, None].to(x.dtype) ** 2))
    kernels = (kernels / kernels.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (n c, size)
    # One grouped conv per direction blurs every (image, channel) plane with its own kernel.
    planes = x.reshape(1, n * c, h, w)
    planes = F.conv2d(F.pad(planes, (size // 2, size // 2, 0, 0), mode="replicate"),
                      kernels.view(n * c, 1, 1, size), groups=n * c)
    planes = F.conv2d(F.pad(planes, (0, 0, size // 2, size // 2), mode="replicate"),
                      kernels.view(n * c, 1, size, 1), groups=n * c)
    blurred = planes.view(n, c, h, w)
    return torch.where(_per_image(_chosen(n, p, generator, device)), blurred, x)


@dataclass
class Augment:
    """The SimCLR-style pipeline: random resized crop, horizontal flip, colour jitter, random
    grayscale, blur, after an optional small warp (:func:`random_affine`, for a fraction
    ``affine_p`` of the images). Set a probability to 0 (or ``crop_scale`` to (1, 1)) to switch a
    step off; digits, for instance, are not flipped (a mirrored 2 is no digit)."""

    affine_p: float = 0.0
    crop_scale: tuple = (0.2, 1.0)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    jitter: tuple = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
    grayscale_p: float = 0.2
    blur_p: float = 0.5

    def __call__(self, x, generator):
        if self.affine_p > 0:
            warped = random_affine(x, generator)
            x = torch.where(_per_image(_chosen(x.shape[0], self.affine_p, generator, x.device)), warped, x)
        if tuple(self.crop_scale) != (1.0, 1.0):
            x = random_resized_crop(x, generator, scale=tuple(self.crop_scale))
        if self.flip_p > 0:
            x = horizontal_flip(x, generator, self.flip_p)
        if self.jitter_p > 0:
            x = color_jitter(x, generator, *self.jitter, p=self.jitter_p)
        if self.grayscale_p > 0:
            x = random_grayscale(x, generator, self.grayscale_p)
        if self.blur_p > 0:
            x = gaussian_blur(x, generator, p=self.blur_p)
        return x
