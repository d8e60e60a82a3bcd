"""Draw the nucleus segmentation of real C-NMC cells: docs/img/nucleus.png.

    python benchmarks/nucleus_figure.py [../shared/data/cnmc-subset] [--out docs/img/nucleus.png]

Each column is one cell (the first ALL and the first healthy cell of the folder, and two
more of each): the image, the stain channel the nucleus is thresholded on (rgb2hed), and the cell outline (yellow)
with the nucleus (magenta) that :mod:`leukbench.features.nucleus` measures.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv=None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from skimage.segmentation import find_boundaries

    from leukbench.features.handcrafted import _cell_mask, _working_copy
    from leukbench.features.nucleus import segment_nucleus
    from leukbench.images import load_image

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default="../shared/data/cnmc-subset")
    ap.add_argument("--out", default="docs/img/nucleus.png")
    args = ap.parse_args(argv)
    root = Path(args.data)
    paths = sorted((root / "all").iterdir())[:3] + sorted((root / "hem").iterdir())[:3]
    fig, axes = plt.subplots(3, len(paths), figsize=(2.0 * len(paths), 6.2))
    for j, path in enumerate(paths):
        rgb = _working_copy(load_image(str(path)))
        cell, _ = _cell_mask(rgb)
        nucleus, h = segment_nucleus(rgb, cell)
        overlay = rgb.copy()
        overlay[find_boundaries(cell, mode="outer")] = (255, 220, 0)
        overlay[find_boundaries(nucleus, mode="inner")] = (255, 0, 255)
        ratio = nucleus.sum() / max(cell.sum(), 1)
        panels = ((rgb, f"{path.parent.name}: {path.stem[:14]}"),
                  (np.where(cell, h, np.nan), "nuclear stain channel"), (overlay, f"nucleus/cell {ratio:.2f}"))
        for i, (img, title) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(img, cmap="magma" if img.ndim == 2 else None)
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
