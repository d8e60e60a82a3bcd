"""Where the time of handcrafted extraction goes, per image and per stage.

Usage::

    python benchmarks/bench_handcrafted.py [--data DIR] [--limit N]

Decodes ``--limit`` images of ``--data`` (default: the bundled sample) once,
then times each stage of :class:`leukbench.features.handcrafted.HandcraftedExtractor`
on them in this process (one core): working copy, cell mask (CLAHE + Otsu +
components), morphology, texture (GLCM + LBP), colour. Prints milliseconds
per image and images per second.
"""

from __future__ import annotations

import argparse
import platform
import time


def main(argv=None) -> int:
    from leukbench import datasets
    from leukbench.features import handcrafted as hc
    from leukbench.images import load_image
    from leukbench.preprocessing import to_grayscale

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="dataset folder (default: bundled sample)")
    ap.add_argument("--limit", type=int, default=200, help="images to time (default: 200)")
    args = ap.parse_args(argv)

    table = datasets.discover(args.data or datasets.sample_root())
    step = max(1, len(table) // args.limit)
    paths = table["path"].tolist()[::step][: args.limit]
    t0 = time.perf_counter()
    images = [load_image(p) for p in paths]
    decode = time.perf_counter() - t0

    stages = {"working copy": 0.0, "cell mask": 0.0, "morphology": 0.0, "texture": 0.0, "colour": 0.0}
    warm = hc._working_copy(images[0])  # warm-up: imports and first calls of every stage
    warm_mask, _ = hc._cell_mask(warm)
    hc.morphology_features(warm_mask)
    hc.texture_features(to_grayscale(warm), warm_mask)
    hc.color_features(warm, warm_mask)
    for im in images:
        t = time.perf_counter()
        rgb = hc._working_copy(im)
        t1 = time.perf_counter()
        mask, found = hc._cell_mask(rgb)
        t2 = time.perf_counter()
        hc.morphology_features(mask)
        t3 = time.perf_counter()
        hc.texture_features(to_grayscale(rgb), mask)
        t4 = time.perf_counter()
        hc.color_features(rgb, mask)
        t5 = time.perf_counter()
        for k, dt in zip(stages, (t1 - t, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            stages[k] += dt
    n = len(images)
    total = sum(stages.values())
    print(f"{n} images of {args.data or 'the bundled sample'} "
          f"({images[0].shape[1]}x{images[0].shape[0]}), {platform.processor() or platform.machine()}, one process")
    print("| stage | ms / image | share |\n|---|---:|---:|")
    print(f"| decode (load_image) | {1000 * decode / n:.1f} | — |")
    for k, v in stages.items():
        print(f"| {k} | {1000 * v / n:.1f} | {100 * v / total:.0f} % |")
    print(f"| **features, all stages** | **{1000 * total / n:.1f}** | {n / total:.0f} images/s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
