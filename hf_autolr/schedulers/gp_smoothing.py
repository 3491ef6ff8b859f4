"""Gaussian-process smoothing of a noisy loss curve, and the "minimum is behind us" test.

AutoWU (Kim et al., "Automated Learning Rate Scheduler for Large-batch Training", AutoML@ICML
2021, arXiv 2107.05855) models the warmup loss curve as ``y = f(x) + noise`` with a GP prior
``f ~ GP(c, s² · RBF(ℓ))`` on ``x ∈ [0, 1]`` and asks, on the posterior over a grid ``u``, for the
probability that the last point lies above some earlier one:

    p = max_{i<k} Φ((m_k − m_i) / sqrt(C_ii + C_kk − 2 C_ik + jitter)),   k = last grid point.

Two ways to set the hyperparameters ``(c, s², σ²)`` (ℓ stays fixed, 0.2 as in the reference):

- ``"moments"`` (default): closed-form estimates — noise from first differences of the raw
  curve (``σ² ≈ ½ E[(y_{i+1} − y_i)²]``), signal from the rest of the variance. No iterations,
  about 100× cheaper than a likelihood fit.
- ``"mll"``: the reference's exact marginal-likelihood fit with GPyTorch (Adam), warm-started
  from the previous fit.

The posterior itself is the textbook closed form (Rasmussen & Williams 2006, eq. 2.25-2.26),
computed in float64 with one Cholesky factorisation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

_SQRT2 = 2.0**0.5


@dataclass
class GPHyperparameters:
    """Constant mean, signal variance ``s²`` and noise variance ``σ²`` of standardised data.

    Fields are floats, or tensors of shape ``[D]`` for a batch of ``D`` independent GPs; ``noise``
    may also be ``[D, n]``, one variance per observation (e.g. σ²/count for bin means).
    """

    mean: float | torch.Tensor
    outputscale: float | torch.Tensor
    noise: float | torch.Tensor


def _col(value: float | torch.Tensor, like: torch.Tensor, dims: int) -> torch.Tensor:
    """``value`` as a tensor broadcastable over ``dims`` trailing dimensions of ``like``."""
    return torch.as_tensor(value, dtype=like.dtype).reshape(torch.as_tensor(value).shape + (1,) * dims)


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the (tiny) GP algebra on one thread.

    At n ≤ a few hundred points, intra-op threading only adds synchronisation: on a loaded 2-core
    machine a test took 30× longer with 2 threads than with 1. Restores the caller's setting.
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def rbf(a: torch.Tensor, b: torch.Tensor, lengthscale: float) -> torch.Tensor:
    """RBF kernel matrix ``exp(−(a_i − b_j)² / 2ℓ²)`` for 1-D inputs (leading batch dims allowed)."""
    diff = a[..., :, None] - b[..., None, :]
    return torch.exp(-0.5 * (diff / lengthscale) ** 2)


def moment_hyperparameters(y: torch.Tensor) -> GPHyperparameters:
    """Closed-form hyperparameters per row of ``y``: noise from first differences, signal from the rest."""
    if y.shape[-1] < 2:
        ones = torch.ones(y.shape[:-1], dtype=y.dtype)
        return GPHyperparameters(mean=y.mean(-1), outputscale=ones, noise=ones)
    total = y.var(-1)
    noise = torch.minimum(0.5 * torch.diff(y, dim=-1).pow(2).mean(-1), total).clamp_min(1e-4)
    return GPHyperparameters(mean=y.mean(-1), outputscale=(total - noise).clamp_min(1e-3), noise=noise)


def mll_hyperparameters(
    x: torch.Tensor,
    y: torch.Tensor,
    lengthscale: float,
    init: GPHyperparameters | None = None,
    iterations: int = 20,
) -> GPHyperparameters:
    """Exact-marginal-likelihood fit with GPyTorch (as the AutoWU reference), warm-started."""
    import gpytorch  # noqa: PLC0415 - slow import, only needed for this option

    class _Exact(gpytorch.models.ExactGP):
        def __init__(self, train_x, train_y, likelihood):
            super().__init__(train_x, train_y, likelihood)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())

        def forward(self, inputs):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(inputs), self.covar_module(inputs))

    start = init or moment_hyperparameters(y)
    likelihood = gpytorch.likelihoods.GaussianLikelihood()
    model = _Exact(x, y, likelihood).double()
    model.covar_module.base_kernel.lengthscale = lengthscale
    model.covar_module.base_kernel.raw_lengthscale.requires_grad_(False)
    model.covar_module.outputscale = float(start.outputscale)
    model.mean_module.constant.data.fill_(float(start.mean))
    likelihood.noise = max(float(start.noise), 2e-4)
    model.train()
    likelihood.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=0.05)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    for _ in range(iterations):
        optimizer.zero_grad()
        loss = -mll(model(x), y)
        loss.backward()
        optimizer.step()
    return GPHyperparameters(
        mean=float(model.mean_module.constant.detach()),
        outputscale=float(model.covar_module.outputscale.detach()),
        noise=float(likelihood.noise.detach()),
    )


def posterior_for_last(
    x: torch.Tensor,
    y: torch.Tensor,
    grid: torch.Tensor,
    lengthscale: float,
    hyper: GPHyperparameters,
    jitter: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Posterior mean, variances and covariances with the last grid point: all the test needs.

    O(n·G) after the Cholesky factorisation instead of the O(n·G²) full covariance. Inputs may
    carry a leading batch dimension (``x, y: [D, n]``, hyperparameters ``[D]``): one batched
    factorisation serves all draws of a test.
    """
    mean, v = _posterior_mean_and_factor(x, y, grid, lengthscale, hyper, jitter)
    scale = _col(hyper.outputscale, v, 1)
    var = scale - v.pow(2).sum(-2)
    cov_last = scale * rbf(grid, grid[-1:], lengthscale).squeeze(-1) - (v * v[..., -1:]).sum(-2)
    return mean, var, cov_last


def _posterior_mean_and_factor(x, y, grid, lengthscale, hyper, jitter):
    scale = _col(hyper.outputscale, x, 2)
    k_xx = scale * rbf(x, x, lengthscale)
    noise = torch.as_tensor(hyper.noise, dtype=x.dtype)
    noise = noise if noise.dim() == x.dim() else _col(hyper.noise, x, 1)  # per point, or per GP
    k_xx.diagonal(dim1=-2, dim2=-1).add_(noise + jitter)
    chol = torch.linalg.cholesky(k_xx)
    k_xg = scale * rbf(x, grid.expand(*x.shape[:-1], -1), lengthscale)
    v = torch.linalg.solve_triangular(chol, k_xg, upper=False)  # L⁻¹ K_xg
    centered = (y - _col(hyper.mean, y, 1))[..., None]
    alpha = torch.linalg.solve_triangular(chol, centered, upper=False)  # L⁻¹ (y − c)
    mean = _col(hyper.mean, y, 1) + (v.mT @ alpha).squeeze(-1)
    return mean, v


def prob_minimum_behind(
    mean: torch.Tensor, var: torch.Tensor, cov_last: torch.Tensor, jitter: float = 1e-4
) -> torch.Tensor:
    """``max_{i<k} P(f_k > f_i)`` with ``k`` the last grid point: the minimum lies in the past.

    ``var`` is the posterior variance on the grid, ``cov_last`` the covariance with point ``k``;
    one probability per leading batch index.
    """
    diff_var = var[..., :-1] + var[..., -1:] - 2.0 * cov_last[..., :-1] + jitter
    z = (mean[..., -1:] - mean[..., :-1]) / diff_var.clamp_min(jitter).sqrt()
    return 0.5 * (1.0 + torch.erf(z.amax(-1) / _SQRT2))
