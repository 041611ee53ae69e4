"""The deployable cube model: whole cubes in, whole cubes out, band-parallel.

The recurrent state enters CoarSR only through the cheap 1×1 ``rnn_reduceD`` after the expensive body, so for a
batch of ``B`` cubes of ``C`` bands (DESIGN.md, "the band-parallel form"):

1. the body runs on all ``B·C`` bands at once;
2. a scan over the bands applies the 1×1 merge (``C − 1`` tiny steps);
3. the tail runs on all bands at once.

That is the exported graph's form. On a CPU (``pixels_per_call`` set) the three steps run a chunk of bands at a
time, the scan's state carried over, so that a call holds one chunk's maps rather than those of every band.

:class:`FoldedCoarSR` is the export-safe core (no checks, no Python branching on values): it maps an LR batch
``(B, C, h, w)`` to the residual ``SR − bicubic``. :class:`CoarSRCube` wraps it for users: it validates the input
and adds the bicubic skip.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from dualsr_deploy.archs.coarsr import CoarSRConfig, bicubic_upsample
from dualsr_deploy.archs.neighbours import NeighbourRule, check_band_count, neighbour_table
from dualsr_deploy.archs.tail import compose_tail, composed_tail
from dualsr_deploy.errors import InputError

# Receptive field of CoarSR in LR pixels (radius): 2 heads/ends + 2 rounds × (2 bodies × 2 blocks × 2 convs + 2
# three-unit convs) + last conv + ≥ 2 tail convs ≈ 24 (DESIGN.md). Tiles overlapping by this much are exact.
RECEPTIVE_FIELD = 24


class GroupedResBlock(nn.Module):
    """Three branches' ResBlocks side by side: ``x + conv2(relu(conv1(x)))``, grouped convs, BatchNorm folded."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        c = 3 * n_feats
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, groups=3)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, groups=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place on the fresh maps: the same sums as ``x + conv2(relu(conv1(x)))``, bit for bit in any precision
        # (a + b == b + a), without allocating a map for each (1.06-1.16× for the whole network: performance.md).
        return self.conv2(torch.relu_(self.conv1(x))).add_(x)


class FoldedRound(nn.Module):
    """One ``GFM_intra`` + ``GFM_inter`` round on the channel stack ``[g1, g2, g3]`` ``(N, 3F, h, w)``."""

    def __init__(self, n_feats: int, n_blocks: int) -> None:
        super().__init__()
        c = 3 * n_feats
        self.left = nn.ModuleList([GroupedResBlock(n_feats) for _ in range(n_blocks)])
        self.right = nn.ModuleList([GroupedResBlock(n_feats) for _ in range(n_blocks)])
        self.fusion = nn.Conv2d(c, c, 1)
        self.register_buffer("gamma_inter", torch.ones(1, c, 1, 1))
        self.spatial = nn.Conv2d(c, c, 3, padding=1, groups=3)
        self.spectral = nn.Conv2d(c, c, 1)
        self.spatial_one = nn.Conv2d(c, c, 3, padding=1, groups=3)

    gamma_inter: torch.Tensor

    def forward(self, g: torch.Tensor, res: torch.Tensor) -> torch.Tensor:
        a = g
        for block in self.left:
            a = block(a)
        fused = self.fusion(a + g if a is g else a.add_(g))  # in place only on a map made here (GroupedResBlock)
        b = fused
        for block in self.right:
            b = block(b)
        t = (b + fused if b is fused else b.add_(fused)).add_(g).mul_(self.gamma_inter)  # (b + fused + g)·γ
        y = self.spatial_one(self.spatial(t).add_(self.spectral(t)).relu_())
        return y.add_(t).add_(res)  # t + y + res


class FoldedCoarSR(nn.Module):
    """Folded CoarSR for whole cubes: ``lr (B, C, h, w)`` → residual ``(B, C, s·h, s·w)`` (``SR − bicubic``).

    Built by :func:`dualsr_deploy.archs.fold.fold_coarsr`. The neighbour rule is a constant gather; ``C`` is read
    from the input's static shape, so an exported graph has ``C`` fixed and ``B, h, w`` free.

    ``pixels_per_call`` bounds how many LR pixels (band planes × h × w, at least one band of the batch) go through
    the body, the recurrent merge and the tail in one step (``None``: all planes at once, each stage whole: the
    exported graph). It trades memory and cache locality for launch count: on a GPU larger is better; on a small
    CPU about one 128×128 plane per step keeps the working set in cache, and a 285-band window holds ~12× less
    than whole (``benchmarks/tile_memory.py``), so larger tiles fit a memory budget.
    ``channels_last`` runs the network in NHWC layout (the weights must be converted too:
    :meth:`use_channels_last`), which oneDNN's grouped convolutions prefer on CPU.
    ``compose_tail`` (on by default) runs a float32 model's upsampling tail as one LR convolution
    (:mod:`dualsr_deploy.archs.tail`): the same result to float32 rounding, ~1.35× faster at ×4 on a CPU. A reduced
    precision keeps the tail as it is, as its quality records were measured; exported graphs keep it too, and so
    does a model whose tail is being trained (gradients do not flow through the composed kernel).
    """

    def __init__(self, config: CoarSRConfig, rule: NeighbourRule = "paper") -> None:
        super().__init__()
        f = config.n_feats
        self.config = config
        self.rule: NeighbourRule = rule
        self.pixels_per_call: int | None = None
        self.channels_last = False
        self.compose_tail = True
        # (device and layout, the tail's weights it was made from, kernel, bias): see _composed_tail
        self._composed: tuple[tuple[torch.device, bool], list[torch.Tensor], torch.Tensor, torch.Tensor] | None = None
        self.head = nn.Conv2d(5, 3 * f, 3, padding=1)
        self.rounds = nn.ModuleList([FoldedRound(f, config.n_blocks) for _ in range(2)])
        self.last_reduce = nn.Conv2d(3 * f, f, 1)
        self.conv = nn.Conv2d(f, f, 3, padding=1)
        self.merge_out = nn.Conv2d(f, f, 1)
        self.merge_state = nn.Conv2d(f, f, 1, bias=False)
        tail: list[nn.Module] = []
        if config.scale == 3:
            tail += [nn.Conv2d(f, 9 * f, 3, padding=1), nn.PixelShuffle(3)]
        else:
            for _ in range(config.scale.bit_length() - 1):
                tail += [nn.Conv2d(f, 4 * f, 3, padding=1), nn.PixelShuffle(2)]
        tail.append(nn.Conv2d(f, 1, 3, padding=1))
        self.tail = nn.Sequential(*tail)

    @property
    def scale(self) -> int:
        return self.config.scale

    def activation_bytes_per_pixel(self) -> int:
        """Peak activation bytes per LR pixel of one plane, for sizing chunks from a memory budget.

        The body holds about eight ``3F``-channel maps at once (stack, residual, block input/output, the
        three-unit's two branches); the tail's widest step holds the ``s²·F``-channel pixel-shuffle input and output.
        """
        f, s = self.config.n_feats, self.config.scale
        body, tail = self.head.weight.element_size(), self._tail_weight.element_size()
        return max(body * 8 * 3 * f, tail * (2 * s * s * f + s * s))

    def scan_bytes_per_pixel(self) -> int:
        """Bytes per LR pixel of every band plane that a whole-cube call (:attr:`pixels_per_call` ``None``: an
        exported graph, a GPU) holds: the body's ``out`` and ``skip``, the merged maps, the scan's states and their
        stack, the tail's input, of which about four ``F``-channel maps are alive at once (measured: ~0.85 GB for 285
        bands on a 77×160 window with F = 16, 3.8 maps). A chunked call holds one chunk's (:meth:`_bands`)."""
        return self.head.weight.element_size() * 4 * self.config.n_feats

    def set_memory_budget(self, budget_bytes: int | None) -> None:
        """Size :attr:`pixels_per_call` so that activations stay within ``budget_bytes`` (``None``: no bound).

        A chunked call holds, besides the chunk's maps, its input and its result (:meth:`_bands`).
        """
        if budget_bytes is None:
            self.pixels_per_call = None
            return
        if budget_bytes <= 0:
            raise InputError(f"memory budget must be positive; got {budget_bytes}")
        self.pixels_per_call = max(1, budget_bytes // self.activation_bytes_per_pixel())

    def use_channels_last(self, enabled: bool = True) -> FoldedCoarSR:
        """Switch weights and activations to NHWC (``True``) or back to NCHW; returns ``self``."""
        self.channels_last = enabled
        layout = torch.channels_last if enabled else torch.contiguous_format
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.data = module.weight.data.contiguous(memory_format=layout)
        return self

    @property
    def _tail_weight(self) -> torch.Tensor:
        return cast(nn.Conv2d, self.tail[0]).weight

    def widen_tail(self) -> FoldedCoarSR:
        """Keep the tail (the upsampling convolutions) in float32 while the rest runs in a reduced precision: the
        tail's maps are at up to the output's resolution, and rounding them to bf16 moved SAM most (the quality rule,
        :mod:`dualsr_deploy.backends.fidelity`). Call after converting the model; returns ``self``."""
        self.tail.float()
        return self

    def _tail(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self._tail_weight.dtype
        x = x if x.dtype == dtype else x.to(dtype)
        trained = torch.is_grad_enabled() and self._tail_weight.requires_grad  # gradients flow through the tail
        if self._composes_tail() and not trained:
            kernel, bias = self._composed_tail()
            return composed_tail(x, kernel, bias, self.tail, self.scale)
        return self.tail(x)

    def prepare_tail(self) -> FoldedCoarSR:
        """Compose the tail now (where :meth:`_tail` would), not on the first call: before ``torch.compile``, whose
        graph then takes the kernel as it is. Returns ``self``."""
        if self._composes_tail():
            self._composed_tail()
        return self

    def _composes_tail(self) -> bool:
        """Whether the tail runs composed (its gradients aside): asked for, and a float32 model throughout."""
        float32 = self._tail_weight.dtype == torch.float32 and self.head.weight.dtype == torch.float32
        return self.compose_tail and float32

    def _composed_tail(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The tail's composed kernel and bias in float32 (:func:`compose_tail`), made again whenever the tail's
        weights, device or layout changed (compared with a copy of them: a model made in inference mode has no
        version counters, and the weights are ~20 k values)."""
        cached = self._composed
        if cached is not None and torch.compiler.is_compiling():
            # A compiled model runs fixed weights (the torch backend composes before compiling, prepare_tail): the
            # check below would split its graph at every call.
            return cached[2], cached[3]
        weights = [p.detach() for p in self.tail.parameters()]
        where = (weights[0].device, self.channels_last)
        if (
            cached is None
            or cached[0] != where
            or not all(torch.equal(a, b) for a, b in zip(cached[1], weights, strict=True))
        ):
            kernel, bias = compose_tail(self.tail, self.config.n_feats, self.scale)
            layout = torch.channels_last if self.channels_last else torch.contiguous_format
            kernel = kernel.to(weights[0].dtype).contiguous(memory_format=layout)
            cached = (where, [w.clone() for w in weights], kernel, bias.to(weights[0].dtype))
            self._composed = cached
        return cached[2], cached[3]

    def body(self, planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``planes (N, 5, h, w)`` (band, l0, l1, r0, r1) → ``(out, skip)``, both ``(N, F, h, w)``."""
        f = self.config.n_feats
        g = self.head(planes)
        res = g
        for round_ in self.rounds:
            g = round_(g, res)
        skip = res[:, :f].clone()  # a copy, so the 3F-channel stack is freed once the chunk is done
        return self.conv(self.last_reduce(g)).add_(skip), skip

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        batch, bands, h, w = lr.shape
        index = neighbour_table(bands, self.rule, lr.device).reshape(-1)
        step = bands if self.pixels_per_call is None else max(1, self.pixels_per_call // (h * w * batch))
        if step >= bands:  # every band in one step: the exported graph's form
            return self._bands(lr, index, 0, bands, None)[0]
        s = self.config.scale
        sr = lr.new_empty((batch, bands, s * h, s * w), dtype=self._tail_weight.dtype)
        state: torch.Tensor | None = None
        for first in range(0, bands, step):
            n = min(step, bands - first)
            sr[:, first : first + n], state = self._bands(lr, index, first, n, state)
        return sr

    def _bands(
        self, lr: torch.Tensor, index: torch.Tensor, first: int, n: int, state: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Bands ``[first, first + n)`` of ``lr`` through body, recurrent merge and tail: their residual
        ``(B, n, s·h, s·w)`` and the last band's state (:meth:`chunk`)."""
        batch, _, h, w = lr.shape
        planes = lr.index_select(1, index[5 * first : 5 * (first + n)]).reshape(batch, n, 5, h, w)
        return self.chunk(planes, state)

    def chunk(
        self, planes: torch.Tensor, state: torch.Tensor | None, first: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` consecutive bands' input planes ``(B, n, 5, h, w)`` (band, l0, l1, r0, r1: the neighbour gather)
        through body, recurrent merge and tail: their residual ``(B, n, s·h, s·w)`` and the last band's state
        ``(B, F, h, w)``. ``state`` is the state of the band before the chunk (None: the chunk starts at band 0).
        The merge is ``state_0 = out_0``, ``state_i = W_o·out_i + b + W_s·state_{i−1}``. Run a chunk of bands at a
        time, a call holds one chunk's maps besides its input and result, not ~4 ``F``-channel maps of every band.

        ``first`` (a one-element tensor, 1 or 0) is the graph form of "starts at band 0" (:mod:`dualsr_deploy.export
        .onnx`'s band-chunk graphs, which cannot branch on ``None``): band 0's state is ``first·out_0 + (1 − first)·
        (W_o·out_0 + b + W_s·state)``, exactly ``out_0`` for ``first`` 1 and a finite ``state``."""
        batch, n, _, h, w = planes.shape
        f, s = self.config.n_feats, self.config.scale
        flat = planes.reshape(batch * n, 5, h, w)
        if self.channels_last:
            flat = flat.contiguous(memory_format=torch.channels_last)
        out, skip = self.body(flat)
        merged = self.merge_out(out).reshape(batch, n, f, h, w)
        out = out.reshape(batch, n, f, h, w)
        states = []
        for i in range(n):
            if i == 0 and first is not None and state is not None:
                state = first * out[:, 0] + (1 - first) * (merged[:, 0] + self.merge_state(state))
            else:
                state = out[:, i] if state is None else merged[:, i] + self.merge_state(state)
            states.append(state)
        tail_in = torch.stack(states, 1).reshape(batch * n, f, h, w).add_(skip)
        return self._tail(tail_in).reshape(batch, n, s * h, s * w), states[-1]


def check_lr(lr: torch.Tensor, *, dtype: torch.dtype) -> None:
    """Raise :class:`InputError` unless ``lr`` is a finite ``(B, C ≥ 5, h, w)`` tensor of ``dtype`` in ~[0, 1]."""
    if not isinstance(lr, torch.Tensor):
        raise InputError(f"expected a torch.Tensor of shape (B, C, h, w); got {type(lr).__name__}")
    if lr.dim() != 4:
        hint = " (add a batch axis: lr.unsqueeze(0))" if lr.dim() == 3 else ""
        raise InputError(f"expected an LR batch of shape (B, C, h, w); got shape {tuple(lr.shape)}{hint}")
    check_band_count(lr.shape[1])
    if min(lr.shape[2:]) < 1 or lr.shape[0] < 1:
        raise InputError(f"empty input of shape {tuple(lr.shape)}")
    if not lr.is_floating_point():
        raise InputError(
            f"expected floating-point input in [0, 1]; got {lr.dtype}. Normalise first, e.g. "
            "lr.float() / 65535 for 16-bit data."
        )
    if lr.dtype != dtype:
        raise InputError(
            f"input is {lr.dtype} but the model is {dtype}; convert the input (lr.to({dtype})) "
            f"or the model (model.to({lr.dtype}))"
        )
    finite = torch.isfinite(lr)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise InputError(f"input has {bad} NaN or infinite value(s); mask or fill them (e.g. torch.nan_to_num) first")
    low, high = float(lr.min()), float(lr.max())
    if low < -0.5 or high > 1.5:
        raise InputError(
            f"input values span [{low:.4g}, {high:.4g}], far outside [0, 1]; CoarSR expects reflectance-like "
            "data normalised to [0, 1] (divide by the sensor's maximum)"
        )


class CoarSRCube(nn.Module):
    """CoarSR for whole cubes: ``lr (B, C, h, w)`` float in [0, 1] → SR ``(B, C, s·h, s·w)``, unclipped.

    Attributes: ``scale``, ``neighbours`` (the neighbour rule), ``core`` (the export-safe
    :class:`FoldedCoarSR`). Input is validated (rank, band count ≥ 5, dtype, finite values) before use.
    """

    def __init__(self, core: FoldedCoarSR) -> None:
        super().__init__()
        self.core = core
        self.info: Any = None  # what it was loaded from (a CheckpointInfo, set by load_coarsr): archs import no I/O

    @property
    def scale(self) -> int:
        return self.core.scale

    @property
    def neighbours(self) -> NeighbourRule:
        return self.core.rule

    @property
    def pixels_per_call(self) -> int | None:
        """LR pixels (planes × h × w) per network call; ``None``: all planes at once."""
        return self.core.pixels_per_call

    @pixels_per_call.setter
    def pixels_per_call(self, value: int | None) -> None:
        if value is not None and value < 1:
            raise ValueError(f"pixels_per_call must be ≥ 1 or None; got {value}")
        self.core.pixels_per_call = value

    @property
    def dtype(self) -> torch.dtype:
        return self.core.head.weight.dtype

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        check_lr(lr, dtype=self.dtype)
        return self.core(lr) + bicubic_upsample(lr, self.scale)
