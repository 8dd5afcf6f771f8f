"""Statistical checks for random operators (OpSpec(kind="random", distribution=...)).

A random op is never compared elementwise with torch: another backend's generator legitimately draws other
numbers. Each distribution checks the support (every value where it may be) and the goodness of fit at a
fixed significance ALPHA: the Kolmogorov–Smirnov statistic for continuous distributions, a binomial z-test
or Pearson's chi-square for discrete ones. The KS statistic is computed here, with its asymptotic critical
value sqrt(-ln(alpha/2) / 2n), because torch has no scipy and the project does not depend on it. ALPHA is
tiny: a correct generator fails a case about once in a million runs, while a mean off by a tenth of a
standard deviation on 2^16 samples is rejected with certainty. Inputs are seeded, so torch itself is
deterministic: its result is the same on every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

ALPHA = 1e-6
Z = float(torch.special.ndtri(torch.tensor(1 - ALPHA / 2, dtype=torch.float64)))  # two-sided, ~4.89


def ks_critical(n: int, alpha: float = ALPHA) -> float:
    """The KS statistic a correct sample of n exceeds with probability alpha (asymptotic, n >= ~35)."""
    return math.sqrt(-math.log(alpha / 2) / (2 * n))


def ks_statistic(sample: torch.Tensor, cdf: Any) -> float:
    """sup_x |F_n(x) - F(x)|: the largest gap between the empirical and the hypothesised CDF."""
    x = torch.sort(sample.flatten().to("cpu", torch.float64)).values
    n = x.numel()
    f = cdf(x)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(torch.maximum(i / n - f, f - (i - 1) / n).max())


def chi2_critical(dof: int, alpha: float = ALPHA) -> float:
    """Upper alpha quantile of chi-square(dof), by the Wilson–Hilferty cube approximation."""
    z = float(torch.special.ndtri(torch.tensor(1 - alpha, dtype=torch.float64)))
    k = float(dof)
    return k * (1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3


def _values(out: Any) -> torch.Tensor:
    t = out[0] if isinstance(out, (tuple, list)) else out
    return t.detach().to("cpu")


class Distribution:
    """What a random op's output must be distributed as. `check` returns None, or why not."""

    def check(self, out: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        raise NotImplementedError


@dataclass(frozen=True)
class Continuous(Distribution):
    name: str
    low: float = -math.inf  # support, inclusive
    high: float = math.inf

    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check(self, out: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        x = _values(out).to(torch.float64).flatten()
        if not bool(torch.isfinite(x).all()):
            return f"{int((~torch.isfinite(x)).sum())} non-finite value(s)"
        lo, hi = float(x.min()), float(x.max())
        if lo < self.low or hi > self.high:
            support = f"[{self.low:g}, {self.high:g}]"
            return f"values in [{lo:g}, {hi:g}], outside the support {support} of {self.name}"
        d, crit = ks_statistic(x, self.cdf), ks_critical(x.numel())
        if d > crit:
            return (
                f"not {self.name}: Kolmogorov–Smirnov D={d:.4f} > {crit:.4f} (alpha={ALPHA:g}, "
                f"n={x.numel()}; sample mean {float(x.mean()):.4g}, std {float(x.std()):.4g})"
            )
        return None


@dataclass(frozen=True)
class Uniform(Continuous):
    name: str = "uniform"
    low: float = 0.0
    high: float = 1.0

    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.low) / (self.high - self.low)).clamp(0, 1)


@dataclass(frozen=True)
class Normal(Continuous):
    name: str = "normal"
    mean: float = 0.0
    std: float = 1.0

    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.ndtr((x - self.mean) / self.std)


@dataclass(frozen=True)
class Exponential(Continuous):
    name: str = "exponential"
    low: float = 0.0
    rate: float = 1.0

    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        return 1 - torch.exp(-self.rate * x.clamp(min=0))


@dataclass(frozen=True)
class Cauchy(Continuous):
    name: str = "cauchy"
    median: float = 0.0
    sigma: float = 1.0

    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 + torch.atan((x - self.median) / self.sigma) / math.pi


@dataclass(frozen=True)
class LogNormal(Continuous):
    """exp(N(mean, std)): the mean and std are those of the underlying normal (torch.Tensor.log_normal_)."""

    name: str = "log-normal"
    low: float = 0.0
    mean: float = 0.0
    std: float = 1.0

    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.ndtr((x.clamp(min=1e-300).log() - self.mean) / self.std)


@dataclass(frozen=True)
class Bernoulli(Distribution):
    """0/1 values with P(1) = p: the count of ones within Z standard deviations of n·p."""

    p: float

    def check(self, out: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        x = _values(out).to(torch.float64).flatten()
        if not bool(((x == 0) | (x == 1)).all()):
            return "values other than 0 and 1"
        return _binomial(int(x.sum()), x.numel(), self.p, "ones")


def _binomial(k: int, n: int, p: float, what: str) -> str | None:
    sd = math.sqrt(n * p * (1 - p))
    if abs(k - n * p) > Z * sd + 0.5:
        return f"{k}/{n} {what}, expected {n * p:.0f} ± {Z * sd:.0f} (p={p:g}, alpha={ALPHA:g})"
    return None


@dataclass(frozen=True)
class Dropout(Distribution):
    """native_dropout(x, p, train) -> (out, mask): mask ~ Bernoulli(1 - p), out = x·mask/(1 - p)."""

    p: float

    def check(self, out: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        y, mask = (t.detach().to("cpu") for t in out)
        x = args[0].to(torch.float64)
        keep = mask.to(torch.bool)
        want = torch.where(keep, x / (1 - self.p), torch.zeros_like(x))
        err = (y.to(torch.float64) - want).abs()
        if bool((err > 1e-2 * (want.abs() + 1e-3)).any()):
            return "output is not input·mask/(1-p)"
        return _binomial(int(keep.sum()), keep.numel(), 1 - self.p, "kept")


@dataclass(frozen=True)
class Permutation(Distribution):
    """randperm(n): every integer of [0, n) exactly once, and not the identity."""

    n: int

    def check(self, out: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        x = _values(out).flatten().to(torch.int64)
        if x.numel() != self.n or not torch.equal(torch.sort(x).values, torch.arange(self.n)):
            return f"not a permutation of range({self.n})"
        if self.n > 8 and torch.equal(x, torch.arange(self.n)):
            return "the identity permutation: not shuffled"
        # fixed points of a uniform permutation are ~Poisson(1): more than 20 has probability < 1e-18
        fixed = int((x == torch.arange(self.n)).sum())
        return f"{fixed} fixed points, expected about 1" if fixed > 20 else None


@dataclass(frozen=True)
class Categorical(Distribution):
    """multinomial(probs, n, replacement=True): each row's draws match its probabilities (chi-square).
    Without replacement: indices valid and distinct within each row, and the first draw ~ probs."""

    replacement: bool = True

    def check(self, out: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        idx = _values(out).to(torch.int64)
        probs = args[0].to(torch.float64)
        probs = probs / probs.sum(-1, keepdim=True)
        probs, idx = probs.reshape(-1, probs.shape[-1]), idx.reshape(-1, idx.shape[-1])
        k = probs.shape[-1]
        if bool(((idx < 0) | (idx >= k)).any()):
            return "indices outside [0, number of categories)"
        if bool(torch.gather(probs, 1, idx).eq(0).any()):
            return "drew a category of probability 0"
        if not self.replacement:
            if any(len(set(r.tolist())) != len(r) for r in idx):
                return "repeated indices in a draw without replacement"
            # first draws, pooled over rows: category j is expected sum_r p_rj times (a Poisson-binomial
            # count, whose variance is at most its mean: the chi-square bound stays conservative)
            first = torch.zeros_like(probs).scatter_add_(
                1, idx[:, :1], torch.ones_like(idx[:, :1], dtype=torch.float64)
            )
            probs, idx = probs.sum(0, keepdim=True) / probs.shape[0], first.sum(0, keepdim=True)
            counts, expected = idx, probs * float(first.shape[0])
        else:
            counts = torch.zeros_like(probs).scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
            expected = probs * idx.shape[1]
        support = expected > 0
        stat = float((((counts - expected) ** 2)[support] / expected[support]).sum())
        dof = int(support.sum()) - probs.shape[0]
        crit = chi2_critical(max(dof, 1))
        if stat > crit:
            return f"draws do not follow the probabilities: chi-square {stat:.1f} > {crit:.1f} (dof={dof})"
        return None
