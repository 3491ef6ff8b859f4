"""Per-sample squared gradient norms of one layer's parameters, from its inputs and output gradient.

A rule gets a layer, the (detached) arguments of one call and ``grad_out``, the gradient of the
loss w.r.t. that call's output, and returns ``{param_name: tensor [B]}``: for each sample ``i`` of
the batch (dim 0) the squared norm ``||c_i||^2`` of its *contribution* ``c_i`` to the parameter's
gradient (``sum_i c_i`` is what this call adds to ``param.grad``). Rules never loop over samples:

- ``Linear`` on ``[B, d]``: ``||c_i||^2 = ||g_i||^2 ||x_i||^2``. On ``[B, T, d]`` (any number of
  middle dims, flattened to ``T``) either the "ghost norm" identity
  ``||sum_t g_t x_t^T||^2 = sum_{t,t'} (g_t . g_t') (x_t . x_t')`` or the materialised per-sample
  gradient ``g_i^T x_i``, whichever needs fewer flops, in chunks of samples of bounded memory
  (Goodfellow 2015, arXiv 1510.01799; Li et al. 2022, arXiv 2110.05679 §4).
- ``Conv1d``/``Conv2d``: with ``L`` output positions and ``k``/``o`` inputs/outputs per group, the
  ghost norm on the unfolded input when ``L (k + o) < k o`` (deep layers, small maps), else the
  per-sample weight gradients from one ``conv2d_weight`` with the batch folded into the groups.
- ``LayerNorm``/``RMSNorm``: exact from the recomputed normalised input.
- ``Embedding``: per-sample rows summed over repeated tokens (``padding_idx`` excluded).
- Any other leaf module owning parameters: ``torch.func.vmap`` over ``torch.func.grad`` of
  ``<functional_call(module, x_i), g_i>`` (recomputes the layer's forward, materialises the
  per-sample gradients).

Computation is in float32 (float64 inputs stay float64). Batch dim is dim 0 of the first argument
and of the output.
"""

from __future__ import annotations

from collections.abc import Callable
import torch
import torch.nn.functional as F
from torch import nn

Rule = Callable[[nn.Module, tuple, dict, torch.Tensor, set], dict]


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


TEMP_BYTES = 256 * 2**20  # cap on the temporaries of one chunk of samples


def linear_sq_norms(
    x: torch.Tensor, g: torch.Tensor, want_weight: bool = True, want_bias: bool = True
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Per-sample ``||sum_t g_t x_t^T||^2`` and ``||sum_t g_t||^2`` for ``x [B,T,i]``, ``g [B,T,o]``.

    Of the ghost norm (``T^2 (i + o)`` flops and ``T^2`` memory per sample) and the materialised
    gradient (``T i o`` flops, ``i o`` memory), the one with fewer flops, over chunks of samples
    whose temporaries stay under ``TEMP_BYTES``."""
    dtype = _work_dtype(g)
    x = x.to(dtype)
    g = g.to(dtype)
    batch, steps, d_in = x.shape
    d_out = g.shape[-1]
    weight = bias = None
    if want_weight:
        if steps == 1:
            weight = g.pow(2).sum((1, 2)) * x.pow(2).sum((1, 2))
        else:
            ghost = steps * (d_in + d_out) < d_in * d_out
            per_sample_bytes = (2 * steps * steps if ghost else d_in * d_out) * x.element_size()
            chunk = max(1, TEMP_BYTES // per_sample_bytes)
            parts = []
            for xs, gs in zip(x.split(chunk), g.split(chunk)):
                if ghost:
                    parts.append((torch.bmm(gs, gs.transpose(1, 2)) * torch.bmm(xs, xs.transpose(1, 2))).sum((1, 2)))
                else:
                    parts.append(torch.bmm(gs.transpose(1, 2), xs).pow(2).sum((1, 2)))
            weight = torch.cat(parts)
    if want_bias:
        bias = g.sum(1).pow(2).sum(1)
    return weight, bias


def _as_steps(t: torch.Tensor) -> torch.Tensor:
    """``[B, ..., d] -> [B, T, d]``."""
    return t.reshape(t.shape[0], -1, t.shape[-1])


def linear_rule(module: nn.Linear, args: tuple, kwargs: dict, grad_out: torch.Tensor, names: set) -> dict:
    x = args[0]
    if x.dim() < 2:
        return {}
    weight, bias = linear_sq_norms(_as_steps(x), _as_steps(grad_out), "weight" in names, "bias" in names)
    return {k: v for k, v in (("weight", weight), ("bias", bias)) if v is not None}


def conv_rule(module: nn.Conv1d | nn.Conv2d, args: tuple, kwargs: dict, grad_out: torch.Tensor, names: set) -> dict:
    x, g = args[0], grad_out
    if isinstance(module, nn.Conv1d):
        if x.dim() != 3:
            return {}
        x, g = x.unsqueeze(2), g.unsqueeze(2)
        kernel, stride, dilation = (1, *module.kernel_size), (1, *module.stride), (1, *module.dilation)
        pad = (*module._reversed_padding_repeated_twice, 0, 0)
    else:
        if x.dim() != 4:
            return {}
        kernel, stride, dilation = module.kernel_size, module.stride, module.dilation
        pad = tuple(module._reversed_padding_repeated_twice)
    dtype = _work_dtype(g)
    x, g = x.to(dtype), g.to(dtype)
    if any(pad):
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        x = F.pad(x, pad, mode=mode)
    batch, channels, groups = x.shape[0], x.shape[1], module.groups
    out_channels, positions = g.shape[1], g.shape[2] * g.shape[3]
    fan_in = channels // groups * kernel[0] * kernel[1]  # per group
    fan_out = out_channels // groups
    out: dict[str, torch.Tensor] = {}
    if "weight" in names:
        if positions * (fan_in + fan_out) < fan_in * fan_out:  # few positions: ghost norm, unfolded
            cols = F.unfold(x, kernel, dilation=dilation, padding=0, stride=stride)  # [B, C*kh*kw, L]
            xs = cols.reshape(batch * groups, fan_in, positions).transpose(1, 2)  # [B*G, L, k]
            gs = g.reshape(batch * groups, fan_out, positions).transpose(1, 2)  # [B*G, L, out/G]
            weight, _ = linear_sq_norms(xs, gs, want_bias=False)
            out["weight"] = weight.reshape(batch, groups).sum(1)
        else:  # per-sample gradients by one convolution backward, the batch folded into the groups
            chunk = max(1, TEMP_BYTES // (out_channels * fan_in * x.element_size()))
            parts = []
            for xs, gs in zip(x.split(chunk), g.split(chunk)):
                b = xs.shape[0]
                weight = torch.nn.grad.conv2d_weight(
                    xs.reshape(1, b * channels, *xs.shape[2:]),
                    (b * out_channels, channels // groups, *kernel),
                    gs.reshape(1, b * out_channels, *gs.shape[2:]),
                    stride=stride,
                    padding=0,
                    dilation=dilation,
                    groups=b * groups,
                )
                parts.append(weight.reshape(b, -1).pow(2).sum(1))
            out["weight"] = torch.cat(parts)
    if "bias" in names and module.bias is not None:
        out["bias"] = g.reshape(batch, out_channels, -1).sum(2).pow(2).sum(1)
    return out


def _norm_layer_rule(normalize: Callable[[torch.Tensor], torch.Tensor], shape: tuple) -> Callable:
    def rule(module: nn.Module, args: tuple, kwargs: dict, grad_out: torch.Tensor, names: set) -> dict:
        x = args[0]
        if x.dim() <= len(shape):
            return {}
        dtype = _work_dtype(grad_out)
        g = grad_out.to(dtype)
        reduce_dims = tuple(range(1, x.dim() - len(shape)))
        out = {}
        if "weight" in names:
            per_sample = g * normalize(x.to(dtype))
            if reduce_dims:
                per_sample = per_sample.sum(reduce_dims)
            out["weight"] = per_sample.reshape(x.shape[0], -1).pow(2).sum(1)
        if "bias" in names:
            per_sample = g.sum(reduce_dims) if reduce_dims else g
            out["bias"] = per_sample.reshape(x.shape[0], -1).pow(2).sum(1)
        return out

    return rule


def layer_norm_rule(module: nn.LayerNorm, args: tuple, kwargs: dict, grad_out: torch.Tensor, names: set) -> dict:
    shape = tuple(module.normalized_shape)
    rule = _norm_layer_rule(lambda x: F.layer_norm(x, shape, eps=module.eps), shape)
    return rule(module, args, kwargs, grad_out, names)


def rms_norm_rule(module: nn.Module, args: tuple, kwargs: dict, grad_out: torch.Tensor, names: set) -> dict:
    shape = tuple(module.normalized_shape)
    rule = _norm_layer_rule(lambda x: F.rms_norm(x, shape, eps=module.eps), shape)
    return rule(module, args, kwargs, grad_out, names)


def embedding_rule(module: nn.Embedding, args: tuple, kwargs: dict, grad_out: torch.Tensor, names: set) -> dict:
    """Rows of sample i's gradient are sums of ``g_t`` over its tokens ``t`` with the same id."""
    if "weight" not in names:
        return {}
    idx = args[0]
    batch = idx.shape[0]
    dim = grad_out.shape[-1]
    idx = idx.reshape(batch, -1)
    g = grad_out.reshape(batch, -1, dim).to(_work_dtype(grad_out))
    sample = torch.arange(batch, device=idx.device).unsqueeze(1).expand_as(idx)
    keep = torch.ones_like(idx, dtype=torch.bool) if module.padding_idx is None else idx != module.padding_idx
    keys = sample[keep] * module.num_embeddings + idx[keep]
    unique, inverse = torch.unique(keys, return_inverse=True)
    rows = g.new_zeros(unique.numel(), dim).index_add_(0, inverse, g[keep])
    out = g.new_zeros(batch).index_add_(0, unique // module.num_embeddings, rows.pow(2).sum(1))
    return {"weight": out}


def functorch_rule(module: nn.Module, args: tuple, kwargs: dict, grad_out: torch.Tensor, names: set) -> dict:
    """Generic: vmap over per-sample ``grad`` of ``<module(x_i), g_i>`` with ``functional_call``."""
    from torch.func import functional_call, grad, vmap

    batch = grad_out.shape[0]
    params = {k: v.detach() for k, v in module.named_parameters(recurse=False) if k in names}
    if not params:
        return {}
    flat = list(args) + list(kwargs.values())
    batched = [isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == batch for a in flat]
    n_args = len(args)
    keys = list(kwargs)

    def contribution(p: dict, inputs: list, g_i: torch.Tensor) -> torch.Tensor:
        inputs = [a.unsqueeze(0) if b else a for a, b in zip(inputs, batched)]
        out = functional_call(module, p, tuple(inputs[:n_args]), dict(zip(keys, inputs[n_args:])))
        return (out * g_i.unsqueeze(0)).sum()

    in_dims = (None, [0 if b else None for b in batched], 0)
    per_sample = vmap(grad(contribution), in_dims=in_dims, randomness="error")(params, flat, grad_out)
    dtype = _work_dtype(grad_out)
    return {k: v.reshape(batch, -1).to(dtype).pow(2).sum(1) for k, v in per_sample.items()}


def _own_forward(module: nn.Module, cls: type) -> bool:
    return type(module).forward is cls.forward


def rule_for(module: nn.Module) -> tuple[Rule | None, str]:
    """The rule for ``module`` and its name, or ``(None, reason)`` when none applies."""
    if isinstance(module, nn.Linear) and _own_forward(module, nn.Linear):
        return linear_rule, "linear"
    for cls in (nn.Conv1d, nn.Conv2d):
        if isinstance(module, cls) and _own_forward(module, cls):
            return conv_rule, "conv"
    if isinstance(module, nn.LayerNorm) and _own_forward(module, nn.LayerNorm):
        return layer_norm_rule, "layer_norm"
    rms = getattr(nn, "RMSNorm", None)
    if rms is not None and isinstance(module, rms) and _own_forward(module, rms):
        return rms_norm_rule, "rms_norm"
    if isinstance(module, nn.Embedding) and _own_forward(module, nn.Embedding):
        if module.scale_grad_by_freq:
            return None, "Embedding(scale_grad_by_freq=True) couples the samples of a batch"
        return embedding_rule, "embedding"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return None, "batch norm couples the samples of a batch"
    if next(module.children(), None) is None:
        return functorch_rule, "torch.func"
    return None, f"parameter owned by {type(module).__name__}, which has submodules"
