"""Loss functions of the likelihood-ratio and score estimators, on torch tensors.

Conventions (as in MadMiner): ``y = 0`` marks events drawn from the numerator θ0, ``y = 1``
events drawn from the denominator θ1; the network predicts ``log r̂ = log p(x|θ0)/p(x|θ1)``
and the Bayes-optimal classifier output is ``ŝ = 1/(1 + r̂) = sigmoid(-log r̂)``.
Every masked term is averaged over the rows it applies to, so its weight in the total does
not depend on the class balance of a batch.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional

__all__ = [
    "cross_entropy",
    "improved_cross_entropy",
    "local_score_mse",
    "masked_score_mse",
    "ratio_mse",
]

LOG_R_CLIP = 10.0


def cross_entropy(log_r: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CARL: binary cross-entropy of ŝ = sigmoid(-log r̂) against the labels y.

    ``L = -mean[y log ŝ + (1-y) log(1-ŝ)]`` (Cranmer, Pavez, Louppe, arXiv:1506.02169),
    computed from logits so it stays finite for any log r̂.
    """
    return functional.binary_cross_entropy_with_logits(-log_r, y)


def improved_cross_entropy(log_r: torch.Tensor, r_xz: torch.Tensor) -> torch.Tensor:
    """ALICE: cross-entropy against the soft label ``s(x,z) = 1/(1 + r(x,z))``.

    Replacing y by its conditional expectation given (x, z) lowers the variance
    (Stoye, Brehmer, Louppe, Pavez, Cranmer, arXiv:1808.00973).
    """
    return functional.binary_cross_entropy_with_logits(-log_r, 1.0 / (1.0 + r_xz))


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the rows where ``mask`` is 1 (0 when no row is selected)."""
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def ratio_mse(log_r: torch.Tensor, y: torch.Tensor, r_xz: torch.Tensor) -> torch.Tensor:
    """ROLR: regress r̂ on r(x,z) for θ1 events and 1/r̂ on 1/r(x,z) for θ0 events.

    ``L = mean_{y=1} (r̂ - r(x,z))² + mean_{y=0} (1/r̂ - 1/r(x,z))²``
    (Brehmer, Louppe, Pavez, Cranmer, arXiv:1805.00020); log r̂ and log r(x,z) are clipped to
    ±10 so single extreme weights cannot dominate.
    """
    log_r = log_r.clamp(-LOG_R_CLIP, LOG_R_CLIP)
    r_xz = r_xz.clamp(math.exp(-LOG_R_CLIP), math.exp(LOG_R_CLIP))
    numerator = (torch.exp(-log_r) - 1.0 / r_xz) ** 2
    denominator = (torch.exp(log_r) - r_xz) ** 2
    return _masked_mean(numerator, 1.0 - y) + _masked_mean(denominator, y)


def masked_score_mse(score: torch.Tensor, t_xz: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Score regression on the rows where the joint score is an unbiased target.

    ``L = mean_{mask} mean_p (t̂_p(x|θ) - t_p(x,z|θ))²``; for the ratio methods (RASCAL,
    CASCAL, ALICES) the mask selects events drawn from the θ at which t(x,z) was computed.
    """
    squared = ((score - t_xz) ** 2).mean(dim=1)
    return _masked_mean(squared, mask)


def local_score_mse(score: torch.Tensor, t_xz: torch.Tensor) -> torch.Tensor:
    """SALLY/SALLINO: ``L = mean (t̂(x) - t(x,z|θ_ref))²`` over rows and components.

    The minimiser is the true score t(x|θ_ref) (Brehmer, Cranmer, Louppe, Pavez,
    arXiv:1805.00013 and 1805.12244).
    """
    return functional.mse_loss(score, t_xz)
