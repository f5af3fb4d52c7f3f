"""Networks of the five methods, sized so that training on 2 CPU cores is practical.

Every network is a *trunk* (images or feature vectors in, one feature vector per sample out)
followed by method-specific heads. Widths are arguments: the defaults are small sizes that
train on a CPU (docs/quality.md has the runs); the papers' sizes are given in each docstring.
"""
import torch
from torch import nn
import torch.nn.functional as F

from . import distributed


def conv_bn_relu(in_channels, out_channels, stride=1):
    return [nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


def mlp(dims, *, batch_norm=True, last_activation=False):
    """Linear layers through ``dims`` with BN + ReLU between them (and after the last if asked)."""
    layers = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        activated = i < len(dims) - 2 or last_activation
        # A bias right before BN is cancelled by BN's mean subtraction.
        layers.append(nn.Linear(d_in, d_out, bias=not (activated and batch_norm)))
        if activated:
            layers += ([nn.BatchNorm1d(d_out)] if batch_norm else []) + [nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ConvTrunk(nn.Module):
    """ALL-ConvNet-style trunk (DAC / DSEC): stages of ``depth`` 3x3 conv-BN-ReLU blocks, a 2x2
    max-pool between stages, channels doubling per stage, global average pooling at the end.

    DAC's MNIST network is widths (64, 128) with depth 3; the default (16, 32, 64) x 1 needs
    about 2 M multiply-adds per 28 x 28 image, some 60x fewer.

    ``pool`` is the side of the grid the last stage is average-pooled to (1: global average
    pooling). A trunk this shallow sees ~15 px per output, so global pooling keeps which
    strokes are present but not where, and digits made of similar strokes end in one cluster;
    a 3 x 3 grid keeps the coarse layout (docs/quality.md).
    """

    def __init__(self, in_channels, widths=(16, 32, 64), depth=1, pool=1):
        super().__init__()
        layers, channels = [], in_channels
        for stage, width in enumerate(widths):
            if stage:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            for _ in range(depth):
                layers += conv_bn_relu(channels, width)
                channels = width
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(pool), nn.Flatten())
        self.out_dim = channels * pool * pool

    def forward(self, x):
        return self.body(x)


class MLPTrunk(nn.Module):
    """Fully connected trunk for plain feature vectors (DSEC's text and audio features)."""

    def __init__(self, in_dim, hidden=(512, 256)):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), mlp((in_dim, *hidden), last_activation=True))
        self.out_dim = hidden[-1]

    def forward(self, x):
        return self.body(x)


class BasicBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.body = nn.Sequential(*conv_bn_relu(in_channels, out_channels, stride),
                                  nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(out_channels))
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


class Sobel(nn.Module):
    """Grayscale then horizontal and vertical Sobel filters: 2 output channels (PICA's option,
    which keeps the network from clustering on colour alone)."""

    out_channels = 2

    def __init__(self):
        super().__init__()
        gx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        self.register_buffer("kernels", torch.stack([gx, gx.T]).unsqueeze(1), persistent=False)

    def forward(self, x):
        gray = x.mean(dim=1, keepdim=True)
        return F.conv2d(gray, self.kernels.to(gray.dtype), padding=1)


class ResNetTrunk(nn.Module):
    """Small ResNet with a 3x3 stride-1 stem (no 7x7 stem or stem max-pool: on 32 px and smaller
    inputs those throw away most of the image). PICA uses a ResNet-34-like body; the default
    here is one BasicBlock per stage at widths (32, 64, 128)."""

    def __init__(self, in_channels, widths=(32, 64, 128), blocks=1, pool=1):
        super().__init__()
        layers = conv_bn_relu(in_channels, widths[0])
        channels = widths[0]
        for stage, width in enumerate(widths):
            for block in range(blocks):
                layers.append(BasicBlock(channels, width, 2 if stage and not block else 1))
                channels = width
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(pool), nn.Flatten())
        self.out_dim = channels * pool * pool

    def forward(self, x):
        return self.body(x)


class SobelTrunk(nn.Module):
    """A trunk fed the :class:`Sobel` edges of the images instead of their pixels."""

    def __init__(self, trunk):
        super().__init__()
        self.sobel = Sobel()
        self.trunk = trunk
        self.out_dim = trunk.out_dim

    def forward(self, x):
        return self.trunk(self.sobel(x))


def make_trunk(input_shape, *, kind="conv", widths=None, depth=2, hidden=(512, 256), sobel=False, pool=1):
    """The trunk for samples of ``input_shape``: (C, H, W) images get ``kind`` ("conv" or
    "resnet"), fed their :class:`Sobel` edges with ``sobel``; (D,) feature vectors an MLP."""
    if len(input_shape) == 1:
        return MLPTrunk(input_shape[0], tuple(hidden))
    channels = Sobel.out_channels if sobel else input_shape[0]
    if kind == "conv":
        trunk = ConvTrunk(channels, tuple(widths or (16, 32, 64)), depth, pool)
    elif kind == "resnet":
        trunk = ResNetTrunk(channels, tuple(widths or (32, 64, 128)), depth, pool)
    else:
        raise ValueError(f"unknown trunk kind {kind!r}; expected 'conv' or 'resnet'")
    return SobelTrunk(trunk) if sobel else trunk


def cluster_head(dims, *, batch_norm=True):
    """An MLP through ``dims`` ending in k batch-normalised logits, for the pairwise losses
    (the restraint layer is in the loss). The final BN, as in DAC's networks, spreads the
    logits from the first step: near-equal logits make every pair similar, every pair a
    positive, and the clustering collapses into one cluster (seen with AE+DAC's plain head)."""
    return nn.Sequential(mlp(dims, batch_norm=batch_norm), nn.BatchNorm1d(dims[-1]))


class ClusterNet(nn.Module):
    """Trunk + :func:`cluster_head` (DAC / DSEC)."""

    def __init__(self, trunk, num_clusters, hidden=None):
        super().__init__()
        self.trunk = trunk
        self.head = cluster_head((trunk.out_dim, hidden or trunk.out_dim, num_clusters))

    def forward(self, x):
        return self.head(self.trunk(x))


class ConvAutoencoder(nn.Module):
    """The fully convolutional autoencoder of AE+DAC (Table 3): four stride-2 3x3 convs with
    8/16/32/64 channels and BN + ReLU, the mirrored transposed convs back to the input, and the
    clustering head FC (flattened code, 256 on 28 px) -> 64 -> k on the code, plus a BN on the
    k logits (see :func:`cluster_head`: without it AE+DAC collapsed into one cluster).

    ``strides`` of the convs (the decoder mirrors them): convs of stride 1 first keep more of
    the image in the code."""

    def __init__(self, input_shape, num_clusters, channels=(8, 16, 32, 64), head_hidden=64, strides=(2, 2, 2, 2)):
        super().__init__()
        in_channels, height, width = input_shape
        if len(strides) != len(channels) or not all(isinstance(s, int) and s >= 1 for s in strides):
            raise ValueError(f"strides must be {len(channels)} positive integers, one per conv of channels "
                             f"{tuple(channels)}; got {strides}")
        enc, dec, c = [], [], in_channels
        for out, stride in zip(channels, strides):
            enc.append(nn.Sequential(*conv_bn_relu(c, out, stride=stride)))
            # The last decoder layer outputs pixels in [0, 1]: no BN, a sigmoid.
            dec.insert(0, nn.ModuleList([nn.ConvTranspose2d(out, c, 3, stride=stride, padding=1),
                                         nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
                                         if dec else nn.Sigmoid()]))
            c = out
            height, width = (height - 1) // stride + 1, (width - 1) // stride + 1
        self.encoder = nn.ModuleList(enc)
        self.decoder = nn.ModuleList(dec)
        self.code_shape = (c, height, width)
        self.head = cluster_head((c * height * width, head_hidden, num_clusters), batch_norm=False)

    def forward(self, x, reconstruct=True):
        """Returns ``(cluster logits, reconstruction)``; the reconstruction is None without
        ``reconstruct`` (the decoder, as costly as the encoder, is skipped)."""
        sizes = []
        for layer in self.encoder:
            sizes.append(x.shape[-2:])
            x = layer(x)
        logits = self.head(x.flatten(1))
        if not reconstruct:
            return logits, None
        for (deconv, activation), size in zip(self.decoder, reversed(sizes)):
            x = activation(deconv(x, output_size=size))
        return logits, x


class MultiHeadNet(nn.Module):
    """A trunk and named heads, each an MLP from the trunk's features; ``forward`` returns a dict
    of head outputs (PICA's main and over-clustering heads, DCSC's projectors)."""

    def __init__(self, trunk, heads):
        super().__init__()
        self.trunk = trunk
        self.heads = nn.ModuleDict(heads)

    def forward(self, x, heads=None):
        h = self.trunk(x)
        return {name: self.heads[name](h) for name in (heads or self.heads.keys())}


class DCSCNet(nn.Module):
    """DCSC's backbone and four heads: feature projector (to ``feature_dim``, for the
    feature-level contrastive loss), cluster projector (to k, softmax), semantic projector (to
    k, softmax) and, on the semantic projector only, the predictor (k to k, softmax): the
    asymmetric pair of the semantic-level loss."""

    def __init__(self, trunk, num_clusters, feature_dim=128):
        super().__init__()
        d, k = trunk.out_dim, num_clusters
        self.trunk = trunk
        self.feature_projector = mlp((d, d, feature_dim))
        self.cluster_projector = mlp((d, d, k))
        self.semantic_projector = mlp((d, d, k))
        self.predictor = mlp((k, d, k))

    def forward(self, x):
        """Returns ``(z, c, p, q)``: features, cluster probabilities, predictions and
        semantic projections."""
        h = self.trunk(x)
        q = F.softmax(self.semantic_projector(h), dim=1)
        return (self.feature_projector(h), F.softmax(self.cluster_projector(h), dim=1),
                F.softmax(self.predictor(q), dim=1), q)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalisation whose training statistics are those of the global batch of a
    torch.distributed job: per-channel sums and centred squares are all-reduced over ``group``
    (two all-reduces forward, two backward), so N ranks normalise exactly as one process does
    on the concatenated batch. Works on any device and backend (gloo included, where
    ``torch.nn.SyncBatchNorm`` needs a GPU); computed in float32 or better. Outside training,
    or on a single rank, it is plain batch normalisation."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 group=None, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.group = group

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"GlobalBatchNorm expects (N, C, ...) input, got {input.dim()}D")

    def forward(self, input):
        group = self.group if self.group is not None else torch.distributed.group.WORLD
        if not (self.training and torch.distributed.is_initialized()
                and torch.distributed.get_world_size(group) > 1):
            return super().forward(input)
        self._check_input_dim(input)
        channels = [0] + list(range(2, input.dim()))
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input if input.dtype == torch.float64 else input.float()
        local_count = x.new_full((1,), input.numel() // max(1, input.shape[1]))
        sums = distributed.all_reduce_sum(torch.cat([x.sum(channels), local_count]), group)
        count = sums[-1].detach()
        mean = sums[:-1] / count
        centred = x - mean.view(shape)
        var = distributed.all_reduce_sum(centred.square().sum(channels), group) / count
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                          else self.momentum)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        return out.to(input.dtype)


def convert_global_batchnorm(module, group=None):
    """``module`` with every BatchNorm1d/2d/3d replaced by a :class:`GlobalBatchNorm` holding
    the same parameters and running statistics (in place where possible, as
    ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` does)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        state = module.state_dict()
        like = next((t for t in state.values() if t.is_floating_point()), None)
        converted = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                    module.track_running_stats, group,
                                    device=None if like is None else like.device,
                                    dtype=None if like is None else like.dtype)
        converted.load_state_dict(state)
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, convert_global_batchnorm(child, group))
    return module
