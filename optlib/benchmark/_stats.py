"""Summary statistics over seeds, and the test that marks what the seeds support."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["mean_std", "welch_t_test", "mark_significance", "ALPHA"]

# The significance level of the Welch test against the best optimizer.
ALPHA = 0.05


def _as_floats(values: Sequence[float], name: str) -> list[float]:
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"Invalid {name}: {values!r}; {name} must be a sequence of numbers") from None
    if not out:
        raise ValueError(f"Invalid {name}: empty; {name} must hold at least one number")
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0 for a single value).

    A diverged run is recorded as ``inf``; one of them makes the mean ``inf``
    and the standard deviation ``nan``, so a table never hides a divergence.
    """
    xs = _as_floats(values, "values")
    if not all(math.isfinite(x) for x in xs):
        return math.inf, math.nan
    mean = sum(xs) / len(xs)
    if len(xs) == 1:
        return mean, 0.0
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    return mean, math.sqrt(var)


def _t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom."""
    try:
        from scipy.stats import t as student_t
    except ImportError:
        # Without scipy: P(|T| > |t|) = I_{df/(df+t^2)}(df/2, 1/2), the regularised
        # incomplete beta function, by its continued fraction (Numerical Recipes 6.4).
        x = df / (df + t * t)
        two_sided = _betainc(df / 2, 0.5, x)
        return two_sided / 2 if t >= 0 else 1 - two_sided / 2
    return float(student_t.sf(t, df))


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1.0 - x)
    # Lentz's algorithm for the continued fraction.
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return math.exp(log_front) * h / a


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Welch's unequal-variance t-test of ``mean(a) == mean(b)``: ``(t, df, two-sided p)``.

    t = (mean_a - mean_b) / sqrt(s_a^2/n_a + s_b^2/n_b), with the
    Welch–Satterthwaite degrees of freedom. Needs two values per sample.

    Edge cases a benchmark meets: two samples with no spread (deterministic
    runs) are different exactly when their means differ (p = 0 or 1); a sample
    containing a divergence (``inf``) differs from one that has none (p = 0).
    """
    xa, xb = _as_floats(a, "a"), _as_floats(b, "b")
    if len(xa) < 2 or len(xb) < 2:
        raise ValueError(f"Invalid sample sizes: {len(xa)} and {len(xb)}; a Welch test needs at least 2 values in each")
    fa, fb = all(map(math.isfinite, xa)), all(map(math.isfinite, xb))
    if not (fa and fb):
        return (math.nan, math.nan, 1.0 if fa == fb else 0.0)
    ma, sa = mean_std(xa)
    mb, sb = mean_std(xb)
    va, vb = sa * sa / len(xa), sb * sb / len(xb)
    se2 = va + vb
    if se2 == 0.0:
        return (0.0 if ma == mb else math.copysign(math.inf, ma - mb), math.nan, 1.0 if ma == mb else 0.0)
    t = (ma - mb) / math.sqrt(se2)
    df = se2 * se2 / (va * va / (len(xa) - 1) + vb * vb / (len(xb) - 1))
    p = min(1.0, 2.0 * _t_sf(abs(t), df))
    return t, df, p


def mark_significance(samples: dict[str, Sequence[float]], alpha: float = ALPHA) -> dict[str, dict]:
    """Compare every entry against the best one (lowest mean; lower is better).

    Returns, per name, ``{"best": bool, "p": float | None, "distinguishable": bool,
    "mark": str}``. ``mark`` is ``"best"`` for the best entry,
    ``"not distinguishable from the best"`` when Welch's test gives p >= alpha,
    ``"worse (p=...)"`` otherwise. With fewer than two values per entry no test
    is possible and the mark says so.
    """
    if not samples:
        raise ValueError("Invalid samples: empty; samples must map at least one name to its values")
    if not 0 < alpha < 1:
        raise ValueError(f"Invalid alpha: {alpha!r}; alpha must be in (0, 1)")
    means = {name: mean_std(values)[0] for name, values in samples.items()}
    # Ties on the mean go to the first entry, i.e. the caller's order.
    best = min(means, key=lambda name: means[name])
    out = {}
    for name, values in samples.items():
        if name == best:
            out[name] = {"best": True, "p": None, "distinguishable": False, "mark": "best"}
            continue
        if len(values) < 2 or len(samples[best]) < 2:
            out[name] = {"best": False, "p": None, "distinguishable": False, "mark": "untested (one seed)"}
            continue
        _, _, p = welch_t_test(values, samples[best])
        distinguishable = p < alpha
        mark = f"worse (p={p:.2g})" if distinguishable else "not distinguishable from the best"
        out[name] = {"best": False, "p": p, "distinguishable": distinguishable, "mark": mark}
    return out
