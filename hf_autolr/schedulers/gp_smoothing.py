"""Gaussian-process smoothing of a noisy loss curve, and the "minimum is behind us" test.

AutoWU (Kim et al., "Automated Learning Rate Scheduler for Large-batch Training", AutoML@ICML
2021, arXiv 2107.05855) models the warmup loss curve as ``y = f(x) + noise`` with a GP prior
``f ~ GP(c, s² · RBF(ℓ))`` on ``x ∈ [0, 1]`` and asks, on the posterior over a grid ``u``, for the
probability that the last point lies above some earlier one:

    p = max_{i<k} Φ((m_k − m_i) / sqrt(C_ii + C_kk − 2 C_ik + jitter)),   k = last grid point.

Two ways to set the hyperparameters ``(c, s², σ²)`` (ℓ stays fixed, 0.2 as in the reference):

- ``"moments"`` (default): closed-form estimates — noise from first differences of the raw
  curve (``σ² ≈ ½ E[(y_{i+1} − y_i)²]``), signal from the rest of the variance. No iterations,
  about 100× cheaper than a likelihood fit (``shared/specs/offline-assets.md`` §5).
- ``"mll"``: the reference's exact marginal-likelihood fit with GPyTorch (Adam), warm-started
  from the previous fit.

The posterior itself is the textbook closed form (Rasmussen & Williams 2006, eq. 2.25-2.26),
computed in float64 with one Cholesky factorisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_SQRT2 = 2.0**0.5


@dataclass
class GPHyperparameters:
    """Constant mean, signal variance ``s²`` and noise variance ``σ²`` of standardised data."""

    mean: float
    outputscale: float
    noise: float


def rbf(a: torch.Tensor, b: torch.Tensor, lengthscale: float) -> torch.Tensor:
    """RBF kernel matrix ``exp(−(a_i − b_j)² / 2ℓ²)`` for 1-D inputs."""
    diff = a[:, None] - b[None, :]
    return torch.exp(-0.5 * (diff / lengthscale) ** 2)


def moment_hyperparameters(y: torch.Tensor) -> GPHyperparameters:
    """Closed-form hyperparameters: noise from first differences, signal from the remainder."""
    noise = 0.5 * float(torch.diff(y).pow(2).mean()) if y.numel() > 1 else 1.0
    total = float(y.var()) if y.numel() > 1 else 1.0
    noise = min(max(noise, 1e-4), total if total > 0 else 1.0)
    return GPHyperparameters(mean=float(y.mean()), outputscale=max(total - noise, 1e-3), noise=noise)


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
    model.covar_module.outputscale = start.outputscale
    model.mean_module.constant.data.fill_(start.mean)
    likelihood.noise = max(start.noise, 2e-4)
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


def posterior(
    x: torch.Tensor,
    y: torch.Tensor,
    grid: torch.Tensor,
    lengthscale: float,
    hyper: GPHyperparameters,
    jitter: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent posterior mean and covariance of ``f`` on ``grid`` given noisy ``y`` at ``x``."""
    k_xx = hyper.outputscale * rbf(x, x, lengthscale)
    k_xx.diagonal().add_(hyper.noise + jitter)
    chol = torch.linalg.cholesky(k_xx)
    k_xg = hyper.outputscale * rbf(x, grid, lengthscale)
    alpha = torch.cholesky_solve((y - hyper.mean)[:, None], chol)
    mean = hyper.mean + (k_xg.T @ alpha).squeeze(1)
    v = torch.linalg.solve_triangular(chol, k_xg, upper=False)
    cov = hyper.outputscale * rbf(grid, grid, lengthscale) - v.T @ v
    return mean, cov


def prob_minimum_behind(mean: torch.Tensor, cov: torch.Tensor, jitter: float = 1e-4) -> float:
    """``max_{i<k} P(f_k > f_i)`` with ``k`` the last grid point: the minimum lies in the past."""
    last = mean.numel() - 1
    var = cov.diagonal()[:last] + cov[last, last] - 2.0 * cov[last, :last] + jitter
    z = (mean[last] - mean[:last]) / var.clamp_min(jitter).sqrt()
    return float(0.5 * (1.0 + torch.erf(z.max() / _SQRT2)))
