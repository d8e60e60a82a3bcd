"""How often segmentation finds the centred cell, on real single-cell images.

Usage::

    python benchmarks/bench_segmentation.py --step 3 --out benchmarks/out/segmentation.json

For every ``--step``-th image of each data set (default: ../shared/data/pbc-subset,
JPEG, and ../shared/data/cnmc-subset, PNG), :func:`leukbench.preprocessing.segment_cell`
is run and its bounding box checked against the image centre. Single-cell data
sets centre the labelled cell, so a crop found (``found=True``) that does not
contain the centre has almost surely taken a neighbouring cell or a fragment.
A proxy, not a ground-truth IoU: a wrong crop can still contain the centre.
``--show N`` writes a contact sheet of the first N such crops (PNG).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_DATA = [SHARED / "pbc-subset", SHARED / "cnmc-subset"]


def measure(root: Path, step: int):
    from leukbench.datasets import discover
    from leukbench.images import load_image
    from leukbench.preprocessing import segment_cell

    table = discover(root, require_labels=False)
    paths = table["path"].tolist()[::step]
    rows, t0 = [], time.perf_counter()
    for p in paths:
        image = load_image(p)
        s = segment_cell(image)
        h, w = image.shape[:2]
        r0, c0, r1, c1 = s.bbox
        rows.append({"path": p, "found": bool(s.found), "bbox": [int(v) for v in s.bbox],
                     "contains_centre": bool(r0 <= h / 2 <= r1 and c0 <= w / 2 <= c1)})
    seconds = time.perf_counter() - t0
    found = [r for r in rows if r["found"]]
    missed = [r for r in found if not r["contains_centre"]]
    return {"data": str(root), "images": len(rows), "found": len(found), "found_off_centre": len(missed),
            "off_centre_fraction": len(missed) / max(1, len(found)),
            "ms_per_image": 1000 * seconds / max(1, len(rows)),
            "off_centre": [r["path"] for r in missed]}, missed


def contact_sheet(rows, out: Path, size: int = 200, per_row: int = 5) -> None:
    from PIL import Image, ImageDraw

    tiles = []
    for r in rows:
        im = Image.open(r["path"]).convert("RGB")
        r0, c0, r1, c1 = r["bbox"]
        ImageDraw.Draw(im).rectangle([c0, r0, c1, r1], outline=(0, 255, 0), width=4)
        tiles.append(im.resize((size, size)))
    sheet = Image.new("RGB", (size * per_row, size * max(1, -(-len(tiles) // per_row))))
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % per_row) * size, (i // per_row) * size))
    sheet.save(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", default=None, help="data set folder (repeatable)")
    ap.add_argument("--step", type=int, default=3, help="every N-th image (default 3)")
    ap.add_argument("--show", type=int, default=0, help="contact sheet of the first N off-centre crops")
    ap.add_argument("--centrality-power", type=float, default=None,
                    help="override preprocessing.CENTRALITY_POWER (an ablation; 1 = the old linear weight)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    from leukbench import preprocessing

    if args.centrality_power is not None:
        preprocessing.CENTRALITY_POWER = args.centrality_power
    power = preprocessing.CENTRALITY_POWER
    roots = [Path(d) for d in args.data] if args.data else [d for d in DEFAULT_DATA if d.is_dir()]
    if not roots:
        print("no data: pass --data FOLDER (../shared/data is absent)")
        return 1
    results, shown = [], []
    for root in roots:
        res, missed = measure(root, args.step)
        results.append(res)
        shown += missed
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"# segmentation: crops that miss the image centre ({machine}; every {args.step}th image; "
          f"centrality power {power:g})")
    print("| data | images | found | found, centre not in the crop | ms/image |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {Path(r['data']).name} | {r['images']} | {r['found']} | {r['found_off_centre']} "
              f"({100 * r['off_centre_fraction']:.1f} %) | {r['ms_per_image']:.1f} |")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "machine": machine,
                                   "centrality_power": power, "results": results}, indent=2))
        if args.show and shown:
            contact_sheet(shown[:args.show], out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
