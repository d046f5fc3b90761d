"""Server-rendered SVG plots (matplotlib's SVG backend): no script, no CDN, text kept as text.

The decision grid reuses the demo report's figure (fedchain.demo.report.decisions_figure) so the
explorer and report.md colour and label decisions the same way. pyplot keeps global state, so
figures are drawn one at a time.
"""

from __future__ import annotations

import io
import threading
from typing import Any

_LOCK = threading.Lock()
_RC = {"svg.fonttype": "none", "svg.hashsalt": "fedchain-explorer", "font.family": "DejaVu Sans"}


def _svg(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return buf.getvalue()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede the pyplot import
    import matplotlib.pyplot as plt

    return plt


def accuracy_svg(points: list[tuple[int, float]]) -> bytes:
    """Test accuracy (%) per round, from the reports that match the ledger."""
    plt = _pyplot()
    import matplotlib

    with _LOCK, matplotlib.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(6, 3.2))
        if points:
            ax.plot([p[0] for p in points], [p[1] * 100 for p in points], marker="o", color="#1e88e5")
            ax.set_xticks([p[0] for p in points])
        else:
            ax.text(0.5, 0.5, "no report matches the ledger's rounds", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set(xlabel="round", ylabel="test accuracy (%)", ylim=(0, 100), title="accuracy per round (from reports)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return _svg(fig)


def decisions_svg(rounds: list[dict[str, Any]], hospitals: list[str]) -> bytes:
    """Hospital x round grid of the MPC nodes' decisions; `rounds` in the demo report's shape
    ({round, accepted, rejected, malicious}), only rounds the nodes have judged."""
    _pyplot()
    import matplotlib

    from fedchain.demo.report import decisions_figure

    with _LOCK, matplotlib.rc_context(_RC):
        if not rounds or not hospitals:
            plt = _pyplot()
            fig, ax = plt.subplots(figsize=(5, 1.5))
            ax.axis("off")
            ax.text(0.5, 0.5, "no round judged yet", ha="center", va="center")
            return _svg(fig)
        return _svg(decisions_figure(rounds, hospitals))
