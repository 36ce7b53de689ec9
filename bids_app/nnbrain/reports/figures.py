"""Figures (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def similarity_heatmaps(panels: list[tuple[str, list[str], list[str], np.ndarray]], title: str,
                        out_file: Path, value_label: str) -> None:
    """One heatmap per panel: ROIs (rows) x layers (columns).

    Parameters
    ----------
    panels : list of (panel title, layer names, ROI names, array of shape (n_rois, n_layers))
    title : str
    out_file : Path
        PNG to write.
    value_label : str
        Colour bar label.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vmax = max(float(np.nanmax(np.abs(p[3]))) for p in panels) or 1.0
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 1.2, 3.2),
                             squeeze=False, constrained_layout=True)
    for ax, (panel_title, layers, rois, values) in zip(axes[0], panels):
        image = ax.imshow(values, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right")
        ax.set_yticks(range(len(rois)), rois)
        ax.set_title(panel_title, fontsize=10)
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=axes[0].tolist(), label=value_label, shrink=0.8)
    fig.suptitle(title, fontsize=11)
    fig.savefig(out_file, dpi=100, format="png")
    plt.close(fig)
