"""Summary statistics over seeds, the tests that mark what the seeds support, and effect sizes.

Every verdict ("worse", "better", "not distinguishable") comes from Welch's
unequal-variance t-test with Holm's step-down correction across the family of
comparisons made on one problem, and is reported next to two effect sizes with
95% confidence intervals: the difference of the means (Welch's interval) and
Hedges' g (the standardised difference, bias-corrected for small samples).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

__all__ = [
    "mean_std",
    "welch_t_test",
    "t_quantile",
    "holm",
    "mean_difference_ci",
    "hedges_g",
    "compare_samples",
    "compare_pairs",
    "mark_significance",
    "ALPHA",
    "CONFIDENCE",
]

# The family-wise significance level of the Holm-corrected Welch tests.
ALPHA = 0.05
# The level of the confidence intervals printed next to every verdict.
CONFIDENCE = 0.95


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


def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (``df`` may be fractional)."""
    if not 0 < q < 1:
        raise ValueError(f"Invalid q: {q!r}; q must be in (0, 1)")
    if not (math.isfinite(df) and df > 0):
        raise ValueError(f"Invalid df: {df!r}; df must be a finite number > 0")
    try:
        from scipy.stats import t as student_t
    except ImportError:
        # Without scipy: bisection on the survival function, which is monotone in t.
        if q == 0.5:
            return 0.0
        upper = q > 0.5
        target = 1 - q if upper else q  # P(T > t) for the upper-tail point
        lo, hi = 0.0, 1.0
        while _t_sf(hi, df) > target:
            hi *= 2
        for _ in range(200):
            mid = (lo + hi) / 2
            if _t_sf(mid, df) > target:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2 if upper else -(lo + hi) / 2
    return float(student_t.ppf(q, df))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given.

    Sort the m p-values, p_(1) <= ... <= p_(m); the adjusted p_(i) is
    max_{j <= i} min(1, (m - j + 1) p_(j)). Rejecting where the adjusted value is
    below alpha keeps the chance of any false "worse" in the family at most alpha,
    with no assumption on how the tests depend on each other (Holm 1979).
    """
    ps = _as_floats(pvalues, "pvalues") if len(pvalues) else []
    if any(not (0.0 <= p <= 1.0) for p in ps):
        raise ValueError(f"Invalid pvalues: {list(pvalues)!r}; every p-value must be in [0, 1]")
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def _check_confidence(confidence: float) -> float:
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise ValueError(f"Invalid confidence: {confidence!r}; confidence must be in (0, 1)")
    return float(confidence)


def mean_difference_ci(
    a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """``mean(a) - mean(b)`` and its Welch confidence interval ``(difference, low, high)``.

    The interval is difference ± t_{(1+c)/2, ν} · sqrt(s_a²/n_a + s_b²/n_b), with
    the Welch–Satterthwaite ν of :func:`welch_t_test`, so it excludes 0 exactly
    when that (unadjusted) test gives p < 1 - c. A sample with a divergence
    (``inf``) has an infinite difference and no interval (NaN bounds).
    """
    confidence = _check_confidence(confidence)
    xa, xb = _as_floats(a, "a"), _as_floats(b, "b")
    if len(xa) < 2 or len(xb) < 2:
        raise ValueError(f"Invalid sample sizes: {len(xa)} and {len(xb)}; an interval needs at least 2 values in each")
    ma, sa = mean_std(xa)
    mb, sb = mean_std(xb)
    if not (math.isfinite(ma) and math.isfinite(mb)):
        diff = ma - mb if math.isfinite(ma) != math.isfinite(mb) else math.nan
        return diff, math.nan, math.nan
    va, vb = sa * sa / len(xa), sb * sb / len(xb)
    se2 = va + vb
    diff = ma - mb
    if se2 == 0.0:
        return diff, diff, diff
    df = se2 * se2 / (va * va / (len(xa) - 1) + vb * vb / (len(xb) - 1))
    half = t_quantile((1 + confidence) / 2, df) * math.sqrt(se2)
    return diff, diff - half, diff + half


def hedges_g(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Hedges' g of ``a`` against ``b`` and its approximate confidence interval ``(g, low, high)``.

    g = J · (mean_a - mean_b) / s_pooled, with the pooled standard deviation
    s_pooled² = ((n_a-1)s_a² + (n_b-1)s_b²) / (n_a+n_b-2) and the small-sample
    correction J = 1 - 3 / (4(n_a+n_b) - 9). The interval is g ± z_{(1+c)/2} · SE
    with SE² = (n_a+n_b)/(n_a n_b) + g²/(2(n_a+n_b)) (Hedges & Olkin 1985, the
    large-sample normal approximation; with 5 seeds a side it is rough, so read
    it as the order of magnitude of the effect). |g| is in units of the seeds'
    spread: 0.2 is small, 0.8 large (Cohen's rule of thumb).
    """
    confidence = _check_confidence(confidence)
    xa, xb = _as_floats(a, "a"), _as_floats(b, "b")
    na, nb = len(xa), len(xb)
    if na < 2 or nb < 2:
        raise ValueError(f"Invalid sample sizes: {na} and {nb}; Hedges' g needs at least 2 values in each")
    ma, sa = mean_std(xa)
    mb, sb = mean_std(xb)
    if not (math.isfinite(ma) and math.isfinite(mb)):
        return math.nan, math.nan, math.nan
    pooled = math.sqrt(((na - 1) * sa * sa + (nb - 1) * sb * sb) / (na + nb - 2))
    diff = ma - mb
    if pooled == 0.0:
        g = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        return g, g, g
    g = (1 - 3 / (4 * (na + nb) - 9)) * diff / pooled
    se = math.sqrt((na + nb) / (na * nb) + g * g / (2 * (na + nb)))
    z = statistics.NormalDist().inv_cdf((1 + confidence) / 2)
    return g, g - z * se, g + z * se


def compare_samples(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> dict:
    """Welch's test of ``a`` against ``b`` with both effect sizes, unadjusted.

    Returns ``{"diff", "diff_ci", "g", "g_ci", "t", "df", "p"}``; ``diff`` and ``g``
    are positive when ``a``'s mean is larger. Use :func:`compare_pairs` or
    :func:`mark_significance` for verdicts: they correct for the family.
    """
    t, df, p = welch_t_test(a, b)
    diff, dlo, dhi = mean_difference_ci(a, b, confidence)
    g, glo, ghi = hedges_g(a, b, confidence)
    return {"diff": diff, "diff_ci": (dlo, dhi), "g": g, "g_ci": (glo, ghi), "t": t, "df": df, "p": p}


def compare_pairs(
    pairs: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    alpha: float = ALPHA,
    confidence: float = CONFIDENCE,
) -> dict[str, dict]:
    """``a`` against ``b`` for every ``name: (a, b)``, as one Holm-corrected family (lower is better).

    Per name: the fields of :func:`compare_samples`, ``p_holm`` and ``verdict``:
    ``"better"`` when ``a``'s mean is lower and the Holm-adjusted p < alpha,
    ``"worse"`` when it is higher, ``"not distinguishable"`` otherwise; a pair
    with fewer than two values on a side is ``"untested"``.
    """
    _check_alpha(alpha)
    out, tested = {}, []
    for name, (a, b) in pairs.items():
        if len(a) < 2 or len(b) < 2:
            out[name] = {"p": None, "p_holm": None, "verdict": "untested (one seed)"}
            continue
        out[name] = compare_samples(a, b, confidence)
        tested.append(name)
    for name, adjusted in zip(tested, holm([out[n]["p"] for n in tested])):
        row = out[name]
        row["p_holm"] = adjusted
        if adjusted >= alpha:
            row["verdict"] = "not distinguishable"
        else:
            # A divergence makes the difference infinite, and its sign still says which side diverged.
            row["verdict"] = "better" if row["diff"] < 0 else "worse"
    return out


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValueError(f"Invalid alpha: {alpha!r}; alpha must be in (0, 1)")


def mark_significance(
    samples: dict[str, Sequence[float]], alpha: float = ALPHA, confidence: float = CONFIDENCE
) -> dict[str, dict]:
    """Compare every entry against the best one (lowest mean; lower is better), Holm-corrected.

    The k - 1 Welch tests against the best form one family: their p-values are
    Holm-adjusted, so the chance that any optimizer is called worse by luck alone
    is at most ``alpha``. Returns, per name, ``{"best", "p", "p_holm",
    "distinguishable", "mark", "diff", "diff_ci", "g", "g_ci"}``: ``p`` is the
    unadjusted p-value, ``diff`` and ``g`` are this entry minus the best (positive
    = worse) with their ``confidence`` intervals. ``mark`` is ``"best"``,
    ``"not distinguishable from the best"`` (Holm-adjusted p >= alpha) or
    ``"worse (Holm p=...)"``. With fewer than two values per entry no test is
    possible and the mark says so.
    """
    if not samples:
        raise ValueError("Invalid samples: empty; samples must map at least one name to its values")
    _check_alpha(alpha)
    means = {name: mean_std(values)[0] for name, values in samples.items()}
    # Ties on the mean go to the first entry, i.e. the caller's order.
    best = min(means, key=lambda name: means[name])
    empty = {"p": None, "p_holm": None, "diff": None, "diff_ci": None, "g": None, "g_ci": None}
    pairs = {name: (values, samples[best]) for name, values in samples.items() if name != best}
    compared = compare_pairs(pairs, alpha, confidence)
    out = {best: {"best": True, "distinguishable": False, "mark": "best", **empty}}
    for name in samples:
        if name == best:
            continue
        c = compared[name]
        if c["p"] is None:
            out[name] = {"best": False, "distinguishable": False, "mark": "untested (one seed)", **empty}
            continue
        distinguishable = c["p_holm"] < alpha
        mark = f"worse (Holm p={c['p_holm']:.2g})" if distinguishable else "not distinguishable from the best"
        row = {k: c[k] for k in ("p", "p_holm", "diff", "diff_ci", "g", "g_ci")}
        out[name] = {"best": False, "distinguishable": distinguishable, "mark": mark, **row}
    return {name: out[name] for name in samples}
