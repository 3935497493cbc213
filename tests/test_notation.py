"""The chapters' maths follows notation.md (issue 9 §3): one meaning per symbol, and every symbol listed.

Read from the notebooks' markdown maths (``$...$``, ``$$...$$``, amsmath environments, ``{math}``
directives and roles), with code blocks and code spans removed; no build needed.

- The loss is $\\mathcal{L}$: a bare $L$ is the smoothness constant only, so ``L(\\theta)``,
  ``\\nabla L``, ``\\partial L``, ``L^\\star``, ``L_{\\text{train}}`` are errors (``L_2``, ``\\eta L``,
  ``L = \\lambda_{\\max}`` are not).
- $\\mu$ is the strong-convexity constant, not centred RMSProp's running mean ($\\bar g_t$); $\\mu_t$ is
  NAdam's momentum schedule only.
- Bare $\\lambda$ is weight decay; Hessian eigenvalues carry an index ($\\lambda_i$, $\\lambda_{\\max}$).
- Every symbol token of the chapters' maths (a Latin or Greek letter, ``\\ell``, a calligraphic or
  blackboard letter, with its decoration and its subscript or named superscript) appears in notation.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
SOLUTIONS = sorted((ROOT / "chapters" / "solutions").glob("*.ipynb"))
NOTEBOOKS = CHAPTERS + SOLUTIONS
# The rest of the book and the assignments write the loss too; (a) checks them as well.
OTHER_SOURCES = (
    sorted((ROOT / "assignments").glob("*/*.ipynb"))
    + [ROOT / name for name in ("intro.md", "glossary.md", "notation.md")]
    + sorted((ROOT / "teachers").glob("*.md"))
)

# --------------------------------------------------------------------------- the maths of a markdown text

FENCE = re.compile(r"^[ \t]{0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n]*)$")
MATH_DIRECTIVES = {"math"}
AMSMATH = r"equation|align|alignat|gather|multline|eqnarray|flalign"
MATHS = re.compile(
    r"\$\$(?P<display>.+?)\$\$"
    rf"|\\begin\{{(?P<env>{AMSMATH})\*?\}}(?P<ams>.*?)\\end\{{(?P=env)\*?\}}"
    r"|\$(?P<inline>[^$\n]+?)\$",
    re.DOTALL,
)


def _without_code(markdown: str) -> str:
    """The markdown with fenced code and code spans dropped and {math} blocks and roles turned into $$/$."""
    kept, stack = [], []  # stack of open fences: (character, length, kind)
    for line in markdown.split("\n"):
        fence = FENCE.match(line)
        if stack and stack[-1][2] == "code":
            char, length, _ = stack[-1]
            if fence and fence["fence"][0] == char and len(fence["fence"]) >= length and not fence["info"].strip():
                stack.pop()
            continue
        if fence:
            info, char, length = fence["info"].strip(), fence["fence"][0], len(fence["fence"])
            if not info and stack and stack[-1][0] == char and length >= stack[-1][1]:
                kind = stack.pop()[2]
                kept.append("$$" if kind == "math" else "")
            elif info.startswith("{"):
                name = re.match(r"\{([\w:-]+)\}", info)
                kind = "math" if name and name.group(1) in MATH_DIRECTIVES else "directive"
                stack.append((char, length, kind))
                kept.append("$$" if kind == "math" else "")
            else:
                stack.append((char, length, "code"))
            continue
        if stack and stack[-1][2] == "math" and re.match(r"^[ \t]*:[\w-]+:", line):
            continue  # the {math} directive's :label: option
        kept.append(line)
    text = "\n".join(kept)
    text = re.sub(r"\{math\}`([^`]+)`", r"$\1$", text)
    text = re.sub(r"(`+)(?s:.+?)\1", " ", text)
    return text.replace(r"\$", " ")


def maths_of(markdown: str) -> list[str]:
    """Every maths span of a markdown text, in order."""
    spans = []
    for match in MATHS.finditer(_without_code(markdown)):
        spans.append(match["display"] or match["ams"] or match["inline"])
    return [span for span in spans if span and span.strip()]


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def notebook_maths(path: Path) -> Iterator[tuple[int, str, str]]:
    """(cell index, cell markdown, one maths span) for each maths span of the notebook's markdown cells.

    A markdown page counts as one cell per paragraph.
    """
    if path.suffix == ".md":
        for index, paragraph in enumerate(re.split(r"\n\s*\n", path.read_text(encoding="utf-8"))):
            for span in maths_of(paragraph):
                yield index, paragraph, span
        return
    nb = json.loads(path.read_text(encoding="utf-8"))
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "markdown":
            text = _source(cell)
            for span in maths_of(text):
                yield index, text, span


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT / "chapters" if path.is_relative_to(ROOT / "chapters") else ROOT))


def _short(span: str, limit: int = 90) -> str:
    span = " ".join(span.split())
    return span if len(span) <= limit else span[: limit - 3] + "..."


# --------------------------------------------------------------------------- (a) the loss is \mathcal{L}

# A bare L used as the loss: applied to parameters, differentiated, or given a minimum value or a
# train/validation subscript. L times a bracket, L_2 and L2, \eta L, L/\mu and L = ... are the
# smoothness constant (or the L2 norm) and do not match.
_PARAMETER = r"\\(?:theta|vartheta|varphi|phi|hat|bar|tilde|cdot|mathbf|boldsymbol)(?![A-Za-z])|[wxz](?![A-Za-z])"
BARE_L_AS_LOSS = re.compile(
    r"(?<![\\A-Za-z])L\s*(?:_\s*(?:\{[^{}]*\}|\\?\w+)\s*)?\(\s*(?:" + _PARAMETER + r")"  # L(\theta), L_B(\theta)
    r"|\\nabla\s*(?:\^\s*\{?\s*2\s*\}?\s*)?(?:_\s*(?:\{[^{}]*\}|\\?\w+)\s*)?L(?![A-Za-z])"  # \nabla L
    r"|\\partial\s*L(?![A-Za-z])"  # \partial L / \partial w
    r"|(?<![\\A-Za-z])L\s*\^\s*(?:\\star|\*|\{\s*(?:\\star|\*)\s*\})"  # L^\star
    r"|(?<![\\A-Za-z])L\s*_\s*\{?\s*\\(?:text|mathrm)\s*\{\s*(?:train|val|valid|validation|test|batch)"  # L_{\text{train}}
)  # (\hat L is left alone: it may be an estimate of the smoothness constant)


def _calligraphic_removed(span: str) -> str:
    """\\mathcal{L}, \\mathcal L, \\mathbb{L}, ... -> a placeholder, so only bare L is left to look at."""
    return re.sub(
        r"\\(?:mathcal|mathscr|mathbb|mathrm|mathbf|mathit|boldsymbol)\s*(?:\{\s*[A-Za-z]\s*\}|[A-Za-z])", "Ж", span
    )


def bare_loss_uses(span: str) -> list[str]:
    return [m.group(0) for m in BARE_L_AS_LOSS.finditer(_calligraphic_removed(span))]


@pytest.mark.parametrize(
    ("span", "flagged"),
    [
        (r"g_t \gets \nabla L(\theta_{t-1})", True),
        (r"L(\theta) = g\,\theta", True),
        (r"L_\lambda(\theta) = L(\theta) + \tfrac{\lambda}{2}\|\theta\|^2", True),
        (r"\nabla^2 L \preceq L I", True),
        (r"\frac{\partial L}{\partial w}", True),
        (r"L(\theta_t) - L^\star", True),
        (r"L_{\text{train}}", True),
        (r"\mathcal{L}(w, b)", False),
        (r"\nabla \mathcal{L}(\theta_{t-1})", False),
        (r"\nabla^2 \mathcal L \preceq L I", False),
        (r"\eta < 2/L", False),
        (r"\eta L(1 - \beta)", False),
        (r"L = \lambda_{\max}", False),
        (r"L_2", False),
        (r"\lambda \|\theta\|_2^2 \text{ (the } L_2 \text{ penalty)}", False),
        (r"\max\big(|1 - \eta\mu|,\; |1 - \eta L|\big)", False),
        (r"\mathcal{L}^\star", False),
        (r"\hat L = 9.8 \text{ (power iteration)}", False),
        (r"\mathbb{E}\big[L_{\mathcal{B}}(\theta)\big]", True),
        (r"L_{\text{train}} - L_{\text{val}}", True),
    ],
)
def test_bare_loss_pattern(span, flagged):
    """The pattern of (a) on spans it must flag and spans it must leave alone."""
    assert bool(bare_loss_uses(span)) is flagged, (span, bare_loss_uses(span))


@pytest.mark.parametrize("path", NOTEBOOKS + OTHER_SOURCES, ids=_name)
def test_the_loss_is_mathcal_L(path):
    """(a) No notebook writes the loss as a bare L (issue 9 §3: L is the smoothness constant)."""
    found = [
        f"{'paragraph' if path.suffix == '.md' else 'cell'} {index}: {', '.join(uses)}   in ${_short(span)}$"
        for index, _, span in notebook_maths(path)
        if (uses := bare_loss_uses(span))
    ]
    assert not found, (
        f"{_name(path)} writes the loss as bare L (use \\mathcal{{L}}; L is the smoothness constant):\n  "
        + "\n  ".join(found)
    )


# --------------------------------------------------------------------------- (b) mu and lambda

# \mu_t is NAdam's momentum schedule (notation.md); anywhere else it is a running mean in disguise.
MU_T = re.compile(r"\\mu\s*_\s*\{?\s*t\b")
# \mu multiplying a velocity or a buffer is a momentum coefficient (Sutskever et al.'s notation): write \beta.
MU_AS_MOMENTUM = re.compile(r"\\mu\s*\\?,?\s*(?:v|b|m)_")
# In chapter 8 (RMSProp) a \mu beside a gradient or a second moment is a mean of gradients: write \bar g_t.
MU_BESIDE_GRADIENTS = re.compile(r"(?<![A-Za-z\\])(?:g\b|g_|g\^|\\bar\s*\{?\s*g|v_t|\\sigma|\\xi)")
# Bare \lambda (no subscript) in an eigenvalue role: set equal to or bounded by L or \mu, taken in [\mu, L],
# multiplying an eigenvector or error, or naming a matrix indexed by it (T_\lambda). Also a bare \lambda in
# a cell that speaks of eigenvalues and not of weight decay.
BARE_LAMBDA = r"\\lambda(?![A-Za-z])(?!\s*_)"
LAMBDA_AS_EIGENVALUE = re.compile(
    rf"{BARE_LAMBDA}\s*(?:=|\\le|\\ge|\\leq|\\geq|<|>|\\in)\s*(?:L(?![A-Za-z])|\\mu(?![A-Za-z])|\[\s*\\mu|\\lambda_)"
    rf"|(?:L|\\mu)\s*(?:=|\\le|\\ge|\\leq|\\geq|<|>)\s*{BARE_LAMBDA}"
    rf"|{BARE_LAMBDA}\s*(?:e|v|u|\\varphi|\\phi|\\delta)(?![A-Za-z])"
    rf"|(?<![\\A-Za-z])[A-KM-Z]\s*_\s*\{{?\s*{BARE_LAMBDA}"  # T_\lambda, N_\lambda; L_\lambda is a regularised loss
    rf"|=\s*{BARE_LAMBDA}\s*(?:v|u|e|x)(?![A-Za-z])"
)


def _eigen_cell_without_weight_decay(text: str) -> bool:
    lowered = text.lower()
    return "eigen" in lowered and not re.search(r"decay|decoupled|penalt|regulari[sz]", lowered)


@pytest.mark.parametrize(
    ("span", "cell", "flagged"),
    [
        (r"\lambda = L", "", True),
        (r"\rho(T_\lambda)", "", True),
        (r"\mathcal{L}_\lambda(\theta) = \mathcal{L}(\theta) + \tfrac{\lambda}{2}\|\theta\|^2", "", False),
        (r"\nabla f = \lambda e", "", True),
        (r"\mu \le \lambda \le L", "", True),
        (r"1 - \eta\lambda", "the eigenvalues of the Hessian", True),
        (r"1 - \eta\lambda_i", "the eigenvalues of the Hessian", False),
        (r"\lambda_{\max} = L", "", False),
        (r"\lambda = 10^{-2}", "", False),
        (r"\theta \gets \theta - \eta\lambda\theta", "", False),
        (r"1 - \eta\lambda", "weight decay shrinks; the eigenvalues of the Hessian", False),
    ],
)
def test_bare_lambda_pattern(span, cell, flagged):
    assert _lambda_as_eigenvalue(span, cell or span) is flagged


def _lambda_as_eigenvalue(span: str, cell: str) -> bool:
    if LAMBDA_AS_EIGENVALUE.search(span):
        return True
    return bool(re.search(BARE_LAMBDA, span)) and _eigen_cell_without_weight_decay(cell)


@pytest.mark.parametrize(
    ("span", "flagged"),
    [
        (r"v_t = \mu v_{t-1} - \varepsilon \nabla f(\theta_{t-1} + \mu v_{t-1})", True),
        (r"\mu\, b_{t-1}", True),
        (r"\eta\mu = (1-\sqrt\beta)^2", False),
        (r"\tfrac12 \lVert \nabla \mathcal{L} \rVert^2 \ge \mu (\mathcal{L} - \mathcal{L}^\star)", False),
    ],
)
def test_mu_as_momentum_pattern(span, flagged):
    assert bool(MU_AS_MOMENTUM.search(span)) is flagged


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_mu_is_the_strong_convexity_constant(path):
    """(b) \\mu is the strong-convexity constant: not centred RMSProp's mean (\\bar g_t), not a momentum
    coefficient (\\beta), and \\mu_t is only NAdam's schedule."""
    found = []
    rmsprop = path.name.startswith("08_")
    for index, text, span in notebook_maths(path):
        if MU_T.search(span) and "nadam" not in text.lower():
            found.append(f"cell {index}: \\mu_t outside NAdam   in ${_short(span)}$")
        elif rmsprop and re.search(r"\\mu(?![A-Za-z])", span) and MU_BESIDE_GRADIENTS.search(span):
            found.append(f"cell {index}: \\mu as a mean of gradients   in ${_short(span)}$")
        elif MU_AS_MOMENTUM.search(span):
            found.append(f"cell {index}: \\mu as a momentum coefficient (write \\beta)   in ${_short(span)}$")
    assert not found, f"{_name(path)} uses \\mu, the strong-convexity constant, for something else:\n  " + "\n  ".join(
        found
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_bare_lambda_is_weight_decay(path):
    """(b) A Hessian eigenvalue carries an index (\\lambda_i, \\lambda_{\\max}); bare \\lambda is weight decay."""
    found = [
        f"cell {index}: ${_short(span)}$"
        for index, text, span in notebook_maths(path)
        if _lambda_as_eigenvalue(span, text)
    ]
    assert not found, (
        f"{_name(path)} uses bare \\lambda for an eigenvalue (write \\lambda_i or \\lambda_{{\\max}}):\n  "
        + "\n  ".join(found)
    )


# --------------------------------------------------------------------------- (c) every symbol in notation.md

GREEK = set(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa varkappa lambda mu nu xi pi "
    "varpi rho varrho sigma varsigma tau upsilon phi varphi chi psi omega "
    "Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega ell".split()
)
# Macros whose braced argument is words, a label or an environment name, not maths.
TEXT_MACROS = set(
    "text textrm textit textbf texttt textsf mbox mathrm operatorname label tag eqref ref begin end "
    "color textcolor hspace vspace href url cite".split()
)
LETTER_FONTS = {"mathcal", "mathbb", "mathscr", "mathfrak"}  # a different letter: \mathcal{L} is not L
BOLD = {"mathbf", "boldsymbol", "bm", "mathit", "pmb"}  # the same letter (vectors are not bold here)
DECORATIONS = {
    "hat": "hat",
    "widehat": "hat",
    "bar": "bar",
    "overline": "bar",
    "tilde": "tilde",
    "widetilde": "tilde",
    "check": "check",
    "dot": "dot",
    "ddot": "ddot",
    "vec": "vec",
    "breve": "breve",
    "mathring": "ring",
}
# Superscripts that name a different quantity; every other superscript is a power, a transpose or an inverse.
NAMED_SUPERSCRIPTS = {
    r"\star": r"\star",
    "*": r"\star",
    r"\max": r"\max",
    r"\min": r"\min",
    r"\infty": r"\infty",
    r"\prime": "'",
    "'": "'",
}


# Function names and words sometimes written in maths without \operatorname or \text.
WORDS_IN_MATHS = set("sign softmax diag var cov tr max min log exp argmin argmax std mean and".split())


def _group(s: str, i: int) -> tuple[str, int]:
    """The argument starting at s[i] (after spaces): a braced group's inside, a macro or one character."""
    while i < len(s) and s[i] in " \t\n":
        i += 1
    if i >= len(s):
        return "", i
    if s[i] == "{":
        depth, j = 1, i + 1
        while j < len(s) and depth:
            depth += {"{": 1, "}": -1}.get(s[j], 0)
            j += 1
        return s[i + 1 : j - 1], j
    if s[i] == "\\":
        macro = re.match(r"\\(?:[A-Za-z]+|.)", s[i:])
        return macro.group(0), i + len(macro.group(0))
    return s[i], i + 1


def _canonical(sub: str) -> str:
    """A subscript, spaces and text macros normalised: {\\text{noise}} -> \\text{noise}, \\mathrm{max} -> \\max."""
    sub = " ".join(sub.split()).strip()
    while sub.startswith("{") and sub.endswith("}") and _group(sub, 0)[1] == len(sub):
        sub = sub[1:-1].strip()
    sub = re.sub(r"\\(?:text|textrm|mathrm|operatorname)\s*\{\s*(max|min)\s*\}", r"\\\1", sub)
    sub = re.sub(r"\\(?:textrm|mathrm|operatorname)\s*\{", r"\\text{", sub)
    return re.sub(r"\s*([{}(),+\-])\s*", r"\1", sub)


def _subscript_class(sub: str) -> str:
    r"""Step indices (t, t-1, T, ...) -> 't'; running indices (i, j, k, n, i_t, ij, ...) -> 'i'; the rest as written.

    A subscript's own subscripts are dropped (\ell_{\mathcal{B}_t} is \ell_{\mathcal{B}}, \ell_{i_t} is \ell_i).
    """
    sub = re.sub(r"\\(mathcal|mathbb)\s*([A-Za-z])(?![A-Za-z])", r"\\\1{\2}", sub)
    sub = re.sub(r"(?<=[}A-Za-z])_(?:\{[^{}]*\}|\\?[A-Za-z0-9]+)", "", sub) if len(sub) > 1 else sub
    if "," in sub and "{" not in sub:  # x_{t,i}: coordinate i of x_t; f_{w,b}: f with parameters w, b
        parts = [_subscript_class(part) for part in sub.split(",")]
        return "i" if set(parts) == {"i"} else ",".join(parts)
    if re.fullmatch(r"[tTs](?:[-+](?:\d+|[a-z]))?", sub):
        return "t"
    if re.fullmatch(r"[a-su-z](?:_\{?[a-z0-9]\}?|[a-z]|[-+]\d+|,[a-z0-9])?", sub):
        return "i"
    return sub


def _named_superscript(raw: str) -> str | None:
    r"""\star, *, \max, \text{EMA} and a layer index (l) name a quantity; anything else is a power or \top."""
    sup = _canonical(raw)
    if sup in NAMED_SUPERSCRIPTS:
        return NAMED_SUPERSCRIPTS[sup]
    if re.fullmatch(r"\\text\{[^{}]*\}", sup):
        return sup
    if re.fullmatch(r"\([a-z]\)", sup):
        return "(" + _subscript_class(sup[1:-1]) + ")"
    return None


def _token(base: str, sub: str | None, sup: str | None) -> str:
    key = base
    if sub:
        sub = _subscript_class(_canonical(sub))
        key += "_" + (sub if len(sub) == 1 else "{" + sub + "}")
    if sup:
        key += "^" + (sup if re.fullmatch(r"\\[A-Za-z]+|.", sup) else "{" + sup + "}")
    return key


def symbol_tokens(span: str) -> list[str]:
    """The symbols of a maths span, each with its decoration, subscript class and named superscript.

    \\hat m_t -> '\\hat m_t', \\beta_1^t -> '\\beta_1' (a power), \\theta^\\star -> '\\theta^\\star',
    v_t^{\\max} -> 'v_t^\\max', \\lambda_{\\max} -> '\\lambda_{\\max}', \\mathcal{B}_t -> '\\mathcal{B}_t',
    \\eta_{t-1} -> '\\eta_t', x_i -> 'x_i', \\lambda_d -> '\\lambda_i'. Words inside \\text{} and
    \\operatorname{} are not symbols; nor are operators (\\nabla, \\sum, \\log, ...) or digits.
    """
    tokens, i = [], 0
    while i < len(span):
        c, base = span[i], None
        if c == "\\":
            macro = re.match(r"\\([A-Za-z]+|.)", span[i:])
            name, i = macro.group(1), i + len(macro.group(0))
            if name in TEXT_MACROS:
                i += span[i : i + 1] == "*"  # \operatorname*{arg\,min}
                _, i = _group(span, i)
                if name == "begin" and span[i : i + 1] == "{":
                    _, i = _group(span, i)  # alignat's column count
                continue
            if name in GREEK:
                base = "\\" + name
            elif name in LETTER_FONTS:
                letter, i = _group(span, i)
                base = f"\\{name}{{{letter.strip()}}}"
            elif name in BOLD:
                inner, i = _group(span, i)
                tokens.extend(symbol_tokens(inner))
                continue
            elif name in DECORATIONS:
                inner, i = _group(span, i)
                inner_tokens = symbol_tokens(inner)
                if len(inner_tokens) == 1:  # \bar g, \bar{g}, \overline{g_t}
                    base = f"\\{DECORATIONS[name]} {inner_tokens[0]}"
                else:  # \overline{x y}: decorate nothing in particular, keep the symbols
                    tokens.extend(inner_tokens)
                    continue
            else:
                continue  # an operator, a function name, spacing or a delimiter
        elif c.isascii() and c.isalpha():
            word = re.match(r"[A-Za-z]+", span[i:]).group(0)
            if len(word) >= 3 and word.lower() in WORDS_IN_MATHS:
                i += len(word)  # a word written in maths without \text
                continue
            base, i = c, i + 1
        else:
            i += 1
            continue
        sub = sup = None
        while True:  # sub- and superscripts in either order, and primes
            j = i
            while j < len(span) and span[j] in " \t\n":
                j += 1
            if span[j : j + 1] == "_" and sub is None:
                sub, i = _group(span, j + 1)
            elif span[j : j + 1] == "^" and sup is None:
                raw, i = _group(span, j + 1)
                sup = _named_superscript(raw)
                if sup is None:  # a power: its own symbols count (e^{-\eta t}, \beta_1^t)
                    tokens.extend(symbol_tokens(raw))
                    sup = ""
            elif span[j : j + 1] == "'":
                sup, i = "'", j + 1
            else:
                break
        if sub is not None:
            # the subscript's own symbols count too (\ell_{i_t} uses i_t, T_\lambda uses \lambda); its single
            # letters are indices, named by the subscript class
            tokens.extend(t for t in symbol_tokens(sub) if not re.fullmatch(r"[A-Za-z]", t))
        tokens.append(_token(base, sub, sup or None))
    return tokens


def _split(token: str) -> tuple[str, str | None, str | None]:
    """'\\hat m_t^\\max' -> ('\\hat m', 't', '\\max'); braces around a subscript or superscript are dropped."""
    match = re.fullmatch(r"(?P<base>.+?)(?:_(?P<sub>\{.*?\}|[^{^]))?(?:\^(?P<sup>.+))?", token)
    sub, sup = match["sub"], match["sup"]
    sub = sub[1:-1] if sub and sub.startswith("{") else sub
    sup = sup[1:-1] if sup and sup.startswith("{") else sup
    return match["base"], sub, sup


def is_checked(token: str) -> bool:
    """Bare lowercase Latin letters (x, a, c, i) are the local variables of a derivation or an example,
    defined where they are used; every other token is a symbol notation.md must list."""
    base, sub, sup = _split(token)
    return not (re.fullmatch(r"[a-z]", base) and sub is None and sup is None)


def is_listed(token: str, listed: set[str]) -> bool:
    """A token is listed when notation.md writes it, or writes the sequence it is one term of.

    A bare symbol is listed with any of its forms (g with g_t); a numbered term (g_1, \\theta_0, \\lambda_1)
    with its step-indexed or index form (g_t, \\lambda_i); a quantile z_{0.9} with another one (z_{0.975});
    a coordinate x_{t,i} with x_t; \\beta_{2,t} with \\beta_2; a named subscript or superscript
    (B_{\\text{noise}}, \\theta^\\star) only as written.
    """
    if token in listed:
        return True
    base, sub, sup = _split(token)
    if sub is None:
        return sup is None and any(_split(other)[0] == base for other in listed)
    if "," in sub:
        return is_listed(_token(base, sub.split(",", 1)[0], sup), listed)
    if re.fullmatch(r"\d+", sub):  # x_{150}: a term of the sequence x_t
        return any(_token(base, index, sup) in listed for index in ("t", "i"))
    if re.fullmatch(_FRACTION, sub):  # z_{1-0.01/2}: a quantile, listed when another one is (z_{0.975})
        return any((b, q) == (base, sup) and re.fullmatch(_FRACTION, p or "") for b, p, q in map(_split, listed))
    return False


_FRACTION = r"[\d.+\-/]*[./][\d.+\-/]*"


def _listed_tokens() -> set[str]:
    return {
        token for span in maths_of((ROOT / "notation.md").read_text(encoding="utf-8")) for token in symbol_tokens(span)
    }


@pytest.mark.parametrize(
    ("span", "tokens"),
    [
        (r"\hat m_t = m_t / (1 - \beta_1^t)", [r"\hat m_t", "m_t", "t", r"\beta_1"]),
        (r"\bar{g}_{t-1} + \overline{g_t}", [r"\bar g_t", r"\bar g_t"]),
        (
            r"\theta^\star \in \arg\min_\theta \mathcal{L}(\theta)",
            [r"\theta^\star", r"\theta", r"\mathcal{L}", r"\theta"],
        ),
        (r"v_t^{\max} = \max(v_{t-1}^{\max}, v_t)", [r"v_t^\max", r"v_t^\max", "v_t"]),
        (r"\lambda_{\max} \le L,\ B_{\text{noise}}", [r"\lambda_{\max}", "L", r"B_{\text{noise}}"]),
        (r"\sum_{i=1}^{n} \ell(\theta; x_i, y_i) \text{ over the set}", ["i", "n", r"\ell", r"\theta", "x_i", "y_i"]),
        (r"\ell_{i_t}(\theta_{t-1}) \quad e^{-\eta t}", ["i_t", r"\ell_i", r"\theta_t", "e", r"\eta", "t"]),
        (
            r"\mathbb{R}^{d}, \lambda_d, \operatorname{tr}\Sigma^\star",
            [r"\mathbb{R}", "d", r"\lambda_i", r"\Sigma^\star"],
        ),
    ],
)
def test_symbol_tokens(span, tokens):
    """The tokenizer of (c) on spans whose symbols are known."""
    assert sorted(symbol_tokens(span)) == sorted(tokens)


def test_is_listed_rules():
    listed = {"g_t", r"\lambda_i", r"\beta_2", r"\theta^\star", "v_t", r"B_{\text{noise}}"}
    assert is_listed("g", listed) and is_listed("g_1", listed) and is_listed("g_{t,i}", listed)
    assert is_listed(r"\lambda_1", listed) and is_listed(r"\beta_{2,t}", listed) and is_listed(r"\theta", listed)
    assert not is_listed(r"\beta_1", listed) and not is_listed("v_t^\\max", listed)
    assert not is_listed(r"B_{\text{crit}}", listed) and not is_listed(r"\hat g_t", listed)
    assert is_listed(r"v_0^\infty", {r"v_t^\infty"}) and not is_listed(r"v_0^\infty", {"v_t"})
    assert (
        is_listed("x_{150}", {"x_t"}) and is_listed("z_{1-0.01/2}", {"z_{0.975}"}) and not is_listed("z_{0.9}", {"z"})
    )


def test_every_symbol_of_the_chapters_is_in_notation_md():
    """(c) Every symbol token of the chapters' and solutions' maths appears in notation.md."""
    listed = _listed_tokens()
    missing: dict[str, list[str]] = {}
    for path in NOTEBOOKS:
        for index, _, span in notebook_maths(path):
            for token in symbol_tokens(span):
                if is_checked(token) and not is_listed(token, listed):
                    missing.setdefault(token, []).append(f"{path.stem}[{index}]")
    report = "\n".join(
        f"  ${token}$  first in {places[0]} ({len(places)} uses)" for token, places in sorted(missing.items())
    )
    print(f"{len(missing)} symbols of the chapters missing from notation.md:\n{report}")
    assert not missing, f"{len(missing)} symbols of the chapters are missing from notation.md:\n{report}"
