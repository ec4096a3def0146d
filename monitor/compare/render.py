"""A `Comparison` for people and for scripts: a text table, one JSON object, a self-contained HTML page.

The HTML page is for someone who is not a statistician: each metric where B differs reads as a sentence
("B has more refusals: 4.1 % against 2.0 %, 2.1 times as many"), with how sure we are in words, the
figures and their interval beside it, and a note when the traffic mix differs.
"""

from __future__ import annotations

import html
import json
from typing import Any

from monitor.compare.metrics import ALL, Comparison, Metric


def _value(m: Metric, v: float | None, signed: bool = False) -> str:
    if v is None:
        return "—"
    if m.unit == "share":
        return f"{v * 100:+.2f} pts" if signed else f"{v * 100:.2f}%"
    sign = "+" if signed else ""
    return f"{v:{sign},.0f} {m.unit}" if abs(v) >= 100 else f"{v:{sign}.3g} {m.unit}"


def _ci(m: Metric) -> str:
    if m.ci_low is None or m.ci_high is None:
        return "—"
    return f"[{_value(m, m.ci_low, True)}, {_value(m, m.ci_high, True)}]"


def _p(p: float | None) -> str:
    if p is None:
        return "—"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _app(app: str) -> str:
    return "all apps" if app == ALL else (app or "(no app)")


def _shares(counts: dict[str, int]) -> str:
    total = sum(counts.values()) or 1
    return ", ".join(f"{_app(k)} {v / total:.0%}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def worse_sentence(metric: dict[str, Any]) -> str:
    """One worse metric, from its JSON form, as the on-call reads it: "refusal rate 6.03% against 1.59% (3.8×)
    in support-bot"."""
    fields = {k: metric.get(k) for k in Metric.__dataclass_fields__}
    m = Metric(**fields)  # type: ignore[arg-type]
    where = "" if m.app == ALL else f" in {_app(m.app)}"
    ratio = m.ratio
    times = f" ({ratio:.1f}×)" if ratio is not None and m.unit == "share" and (ratio >= 1.5 or ratio <= 0.67) else ""
    return f"{m.label} {_value(m, m.b)} against {_value(m, m.a)}{times}{where}"


def to_json(comparison: Comparison) -> str:
    """One JSON object; ``metrics`` items carry name, a, b, diff, ci_low, ci_high, p_value, significant…"""
    return json.dumps(comparison.as_dict(), indent=2, default=str)


def to_text(comparison: Comparison) -> str:
    """A table a terminal shows: one line per metric, the significant ones marked ``*``."""
    c = comparison
    lines = [f"A = {c.a_label}    B = {c.b_label}"]
    for key in ("window_a", "window_b"):
        if key in c.context:
            lines.append(f"{key.replace('_', ' ')}: {c.context[key]}")
    lines.append(f"records: A {sum(c.mix.a.values())}, B {sum(c.mix.b.values())}")
    lines.append(f"mix A: {_shares(c.mix.a)}")
    lines.append(f"mix B: {_shares(c.mix.b)}"
                 + (f"   (mix differs, chi-square p={_p(c.mix.p_value)}: compare --by app)"
                    if c.mix.p_value is not None and c.mix.p_value < c.alpha else ""))
    header = f"{'metric':<34} {'A':>12} {'B':>12} {'B - A':>13} {'95% CI':>29} {'p':>8} {'p holm':>8}  verdict"
    current_app = None
    for m in c.metrics:
        if m.app != current_app:
            current_app = m.app
            lines += ["", f"== {_app(m.app)} ==", header]
        mark = "*" if m.significant else " "
        lines.append(f"{m.name:<33}{mark} {_value(m, m.a):>12} {_value(m, m.b):>12} {_value(m, m.diff, True):>13} "
                     f"{_ci(m):>29} {_p(m.p_value):>8} {_p(m.p_adjusted):>8}  {m.verdict}")
    lines.append("")
    lines.append(f"* significant: Holm-adjusted p < {c.alpha} over the {sum(m.p_value is not None for m in c.metrics)}"
                 f" metrics tested (family-wise error rate {c.alpha}); intervals are per-metric {c.confidence:.0%}.")
    return "\n".join(lines)


def _sure(m: Metric, alpha: float) -> str:
    """How sure, in words, from the Holm-adjusted p-value."""
    p = m.p_adjusted
    if p is None:
        return "not enough data to say"
    if p < 0.001:
        return "almost certainly real"
    if p < alpha:
        return "very likely real"
    if p < 0.2:
        return "possibly a difference, not proven"
    return "no sign of a difference"


def _sentence(m: Metric, a: str, b: str) -> str:
    if m.diff is None:
        return f"{m.label}: not enough data"
    more = "higher" if m.diff > 0 else "lower"
    text = f"{b} has {more} {m.label}: {_value(m, m.b)} against {_value(m, m.a)} for {a}"
    ratio = m.ratio
    if m.unit == "share" and ratio is not None and (ratio >= 1.5 or ratio <= 0.67):
        text += f" ({ratio:.1f}× as much)"
    return text


def to_html(comparison: Comparison) -> str:
    """A page with what is worse, what is better, what did not change, each with how sure we are."""
    c = comparison
    a, b = html.escape(c.a_label), html.escape(c.b_label)
    parts: list[str] = []

    def section(title: str, items: list[Metric], css: str) -> None:
        if not items:
            return
        parts.append(f"<h2>{title}</h2><table><tr><th>where</th><th>what</th><th>how sure</th><th>{a}</th>"
                     f"<th>{b}</th><th>difference (95% interval)</th><th>p (corrected)</th></tr>")
        for m in items:
            parts.append(
                f"<tr class='{css}'><td>{html.escape(_app(m.app))}</td>"
                f"<td>{html.escape(_sentence(m, c.a_label, c.b_label))}</td><td>{_sure(m, c.alpha)}</td>"
                f"<td>{_value(m, m.a)}</td><td>{_value(m, m.b)}</td>"
                f"<td>{_value(m, m.diff, True)} {html.escape(_ci(m))}</td><td>{_p(m.p_adjusted)}</td></tr>")
        parts.append("</table>")

    section(f"Where {b} is worse", [m for m in c.metrics if m.verdict == "worse"], "worse")
    section(f"Where {b} is better", [m for m in c.metrics if m.verdict == "better"], "better")
    section(f"Where {b} is different (neither better nor worse in itself)",
            [m for m in c.metrics if m.verdict == "different"], "different")
    section("No clear difference", [m for m in c.metrics if m.verdict == "no clear difference"], "same")
    section("Not enough data", [m for m in c.metrics if m.verdict == "not enough data"], "none")
    mix_note = ""
    if c.mix.p_value is not None and c.mix.p_value < c.alpha:
        mix_note = ("<p class='warn'>The two serve a different mix of apps: part of any difference may come from "
                    "the mix rather than the model. Compare within apps (<code>--by app</code>).</p>")
    window = "".join(f"<li>{html.escape(k.replace('_', ' '))}: {html.escape(str(v))}</li>"
                     for k, v in c.context.items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{a} vs {b}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:72em}} table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left}}
tr.worse td:first-child{{border-left:4px solid #c0392b}}
tr.better td:first-child{{border-left:4px solid #27ae60}} tr.different td:first-child{{border-left:4px solid #2980b9}}
tr.same,tr.none{{color:#555}} .warn{{background:#fff3cd;padding:.5em}}</style></head><body>
<h1>{b} compared with {a}</h1>
<ul>{window}<li>records: {a} {sum(c.mix.a.values())}, {b} {sum(c.mix.b.values())}</li>
<li>apps: {a}: {html.escape(_shares(c.mix.a))}; {b}: {html.escape(_shares(c.mix.b))}</li></ul>{mix_note}
<p>"How sure" accounts for comparing {sum(m.p_value is not None for m in c.metrics)} metrics at once (Holm's
correction): across all of them, the chance that any "very likely real" is a fluke is at most {c.alpha:.0%}.
Intervals are {c.confidence:.0%} intervals for each metric on its own.</p>
{''.join(parts)}</body></html>"""


def render(comparison: Comparison, fmt: str) -> str:
    """``text``, ``json`` or ``html``."""
    renderers: dict[str, Any] = {"text": to_text, "json": to_json, "html": to_html}
    return renderers[fmt](comparison)
