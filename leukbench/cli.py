"""The ``leukbench`` command line: ``extract`` and ``compare``."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import List, Optional

EXIT_OK, EXIT_NOTHING, EXIT_USAGE = 0, 1, 2


def _count(minimum: int):
    """argparse type: an integer of at least ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum} (got {value})")
        return value
    return parse


def _n_jobs(text: str) -> int:
    """argparse type of --n-jobs: a positive count, or -1 (all cores), -2 (all but one) ..."""
    value = _count(-10**6)(text)
    if value == 0:
        raise argparse.ArgumentTypeError("0 is not a number of jobs; use 1, N, or -1 for all cores")
    return value


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="?", default=None,
                   help="image folder or CSV manifest (default: the bundled C-NMC sample)")
    p.add_argument("--layout", default="auto", choices=["auto", "folders", "cnmc", "manifest"],
                   help="dataset layout (default: detected)")
    p.add_argument("--subject-regex", default=None, metavar="RE",
                   help="regex with a capturing group that takes the subject id out of file names")
    p.add_argument("--features", default="efficientnet_lite0", metavar="LIST",
                   help="comma-separated feature sets; a+b concatenates (default: efficientnet_lite0). "
                        "Deep: efficientnet_lite0, resnet50, efficientnet_b0, efficientnet_b3, densenet121, "
                        "vgg16, alexnet, inception_v3, timm:<model>; handcrafted: handcrafted, morphology, "
                        "texture, color")
    p.add_argument("--weights", default="imagenet", metavar="W",
                   help="weights of the deep backbones: imagenet | none (random init) | path to a weights file "
                        "(default: imagenet; handcrafted features have none)")
    p.add_argument("--segment", action="store_true",
                   help="segment and crop the cell first (for deep backbones; handcrafted features find "
                        "the cell themselves, and on a crop their size columns lose the cell's size)")
    p.add_argument("--grayscale", action="store_true", help="convert images to grayscale first")
    p.add_argument("--device", default="auto", metavar="D",
                   help="auto (CUDA when available, else CPU) | cpu | cuda | cuda:N | mps (default: auto)")
    p.add_argument("--precision", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                   help="arithmetic of the deep backbones: auto (float16 autocast on CUDA, float32 "
                        "elsewhere) | float32 | float16 (CUDA) | bfloat16 (autocast; fast on CPUs with "
                        "AVX-512 BF16 or AMX). Autocast features are cached apart (default: auto)")
    p.add_argument("--batch-size", type=_count(1), default=None, metavar="N",
                   help="images per network batch (deep backbones; default: 16 on the CPU, 32 on a GPU)")
    p.add_argument("--num-workers", type=_count(0), default=None, metavar="N",
                   help="decoding workers: threads between the batches of a network on the CPU, "
                        "processes beside a GPU or for handcrafted features (default: by core count)")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="feature cache (default: $LEUKBENCH_CACHE_DIR, else $XDG_CACHE_HOME/leukbench, "
                        "else ~/.cache/leukbench)")
    p.add_argument("--chunk-size", type=_count(1), default=256, metavar="N",
                   help="images per cache chunk: about the most a crash or kill can lose; Ctrl-C keeps all "
                        "finished batches (default: 256)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="leukbench",
        description="Honest, subject-aware comparisons of features and classifiers "
                    "for leukemic vs healthy blood-cell images.",
    )
    parser.add_argument("--version", action="version", version=f"leukbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ex = sub.add_parser("extract", help="compute (or update) the cached feature matrix of a dataset")
    _add_data_options(ex)
    ex.add_argument("--out", default=None, metavar="DIR",
                    help="also write each feature set to DIR/<name>.parquet (FeatureSet.load reads it)")

    cp = sub.add_parser("compare", help="extract what is missing, then compare classifiers with subject-aware CV")
    _add_data_options(cp)
    cp.add_argument("--classifiers", default=None, metavar="LIST",
                    help="names to run (comma-separated), or -NAME to exclude (default: the battery)")
    cp.add_argument("--battery", default="default", choices=["default", "all"],
                    help="default: leukbench's 12; all: lazypredict's list of classifiers")
    cp.add_argument("--split", default="cv", choices=["cv", "predefined"],
                    help="cv: subject-aware K-fold; predefined: train split vs test split")
    cp.add_argument("--cv", type=int, default=5, metavar="K", help="folds (default: 5)")
    cp.add_argument("--repeats", type=int, default=1, metavar="R", help="repeated CV (default: 1)")
    cp.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    cp.add_argument("--n-jobs", type=_n_jobs, default=1, metavar="N", help="parallel fits (default: 1; -1 all cores)")
    cp.add_argument("--timeout", type=float, default=None, metavar="S",
                    help="stop any single fit after S seconds (recorded as timeout)")
    cp.add_argument("--sort", default="Balanced Accuracy", metavar="METRIC",
                    help="table order (default: 'Balanced Accuracy')")
    cp.add_argument("--positive-label", default=None, metavar="LABEL",
                    help="positive class for binary F1/precision/recall (default: 'all' when present)")
    cp.add_argument("--keep-duplicates", action="store_true",
                    help="do not merge subjects that share identical images (report only)")
    cp.add_argument("--out", default=None, metavar="DIR",
                    help="results folder (default: ./leukbench-results/<dataset>-<time>)")
    return parser


def _extract(args, data=None, *, print_summary: bool = True):
    from .extraction import extract

    result, summaries = extract(
        args.data if data is None else data,
        args.features,
        layout=args.layout,
        weights=args.weights,
        segment=args.segment,
        grayscale=args.grayscale,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        cache_dir=args.cache_dir,
        subject_regex=args.subject_regex,
        chunk_size=args.chunk_size,
        progress=not args.quiet,
        return_summaries=True,
    )
    if print_summary:
        for s in summaries:
            print("\n".join(s.lines()))
    return result, summaries


def cmd_extract(args) -> int:
    from . import datasets

    t0 = time.perf_counter()
    data = args.data if args.data is not None else datasets.sample_root()
    if args.out:
        _check_writable_folder(args.out, "--out")
    result, summaries = _extract(args)
    sets = result if isinstance(result, dict) else {result.name: result}
    for name, fs in sets.items():
        print(f"{name}: {fs!r}")
        if args.out:
            print(f"  written to {fs.save(Path(args.out) / f'{name}.parquet')}")
    print(f"done in {time.perf_counter() - t0:.1f} s ({data})")
    return EXIT_OK


def cmd_compare(args) -> int:
    from . import datasets
    from .evaluation import check_options, compare
    from .reporting import markdown_summary

    data = args.data if args.data is not None else datasets.sample_root()
    # everything that can be checked is checked before any extraction
    if args.classifiers is not None and not any(c.strip().lstrip("-") for c in args.classifiers.split(",")):
        raise ValueError("--classifiers is empty; name classifiers to run, or leave it out for the battery")
    check_options(classifiers=args.classifiers, battery=args.battery, split=args.split, cv=args.cv,
                  repeats=args.repeats, sort=args.sort, timeout=args.timeout)
    out = Path(args.out) if args.out else Path("leukbench-results") / (
        f"{Path(data).name or 'data'}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    _check_writable_folder(out, "--out")
    table = datasets.discover(data, layout=args.layout, subject_regex=args.subject_regex)
    if args.split == "predefined":
        _check_predefined_split(table, data)
    classes = sorted(set(table["label"]) - {""})
    if args.positive_label is not None and len(classes) == 2 and args.positive_label not in classes:
        raise ValueError(f"--positive-label {args.positive_label!r} is not a class of {data}; "
                         f"its classes are {', '.join(classes)}")
    if args.positive_label is not None and len(classes) > 2:
        raise ValueError(f"--positive-label applies to two classes, and {data} has {len(classes)}; "
                         "leave it out (F1, precision and recall are then weighted over the classes)")
    result_sets, _ = _extract(args, table)
    sets = list(result_sets.values()) if isinstance(result_sets, dict) else [result_sets]
    for fs in sets:  # a class whose every image was unreadable: say so, not "one class"
        lost = sorted(set(classes) - {str(c) for c in fs.y})
        if lost and len(classes) - len(lost) < 2:
            raise ValueError(f"{data}: no image of class {', '.join(lost)} could be read for {fs.name} "
                             "(see the skipped images listed above); fix or replace them")
    cache_dir = Path(args.cache_dir) if args.cache_dir else None
    if cache_dir is None:
        from .cache import default_cache_dir

        cache_dir = default_cache_dir()
    result = compare(
        sets,
        classifiers=args.classifiers,
        battery=args.battery,
        cv=args.cv,
        repeats=args.repeats,
        split=args.split,
        seed=args.seed,
        n_jobs=args.n_jobs,
        timeout=args.timeout,
        positive_label=args.positive_label,
        sort=args.sort,
        merge_duplicates=not args.keep_duplicates,
        cache_dir=cache_dir,
        progress=not args.quiet,
    )
    result.params["command"] = "leukbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result.save(out, feature_sets=sets)
    print()
    print(markdown_summary(result).rstrip("\n"))
    print(f"\nresults: {out}/ (report.html, table.md, table.csv, folds.csv, predictions.csv, "
          "audit_pairs.csv, skipped_images.csv, run.json, plots/)")
    return EXIT_OK


def _check_writable_folder(path, option: str) -> None:
    """Fail now, not after the work, when ``path`` cannot become a results folder.

    Tried for real: the missing folders are created and removed again, an
    existing folder gets a temporary file.
    """
    import tempfile

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: exists and is not a folder; give {option} a folder to write into")
    missing, created = [], []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    try:
        for m in reversed(missing):
            m.mkdir()
            created.append(m)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ValueError(f"{path}: cannot write a folder here ({exc.strerror or exc}); "
                         f"give {option} a writable folder") from None
    finally:
        for m in reversed(created):
            try:
                m.rmdir()
            except OSError:
                pass


def _check_predefined_split(table, data) -> None:
    """--split predefined needs labelled images in both splits; said before extracting."""
    counts = table.loc[table["label"] != "", "split"].value_counts()
    n_train, n_test = int(counts.get("train", 0)), int(counts.get("test", 0))
    if n_train == 0 or n_test == 0:
        raise ValueError(f"{data}: --split predefined needs labelled images in both a train and a test "
                         f"split (found {n_train} train, {n_test} test): give a C-NMC release with its "
                         "test set or a manifest with a split column, or use --split cv")


def _rejoin_dash_values(argv: List[str]) -> List[str]:
    """``--classifiers -A,-B`` as ``--classifiers=-A,-B``: argparse would read
    ``-A,-B`` as an option, but the documented exclude syntax starts with ``-``."""
    out, i = [], 0
    while i < len(argv):
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if argv[i] == "--classifiers" and value.startswith("-") and not value.startswith("--") \
                and value not in ("-q", "-h"):
            out.append(f"--classifiers={value}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``leukbench`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(_rejoin_dash_values(sys.argv[1:] if argv is None else argv))
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from .datasets import DatasetError
    from .extraction import ExtractionError

    known = (DatasetError, ValueError, KeyError, FileNotFoundError, OSError)
    try:
        extra = _extra_errors()
        if args.command == "extract":
            return cmd_extract(args)
        return cmd_compare(args)
    except ExtractionError as exc:
        for s in exc.summaries:  # what was found and why it was skipped
            print("\n".join(s.lines()))
        print(f"leukbench: error: {exc}", file=sys.stderr)
        return EXIT_NOTHING
    except KeyboardInterrupt:
        print("\nleukbench: interrupted; finished work is cached, run the same command to resume",
              file=sys.stderr)
        return 130
    except known + extra as exc:  # one clear line, never a traceback
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"leukbench: error: {msg}", file=sys.stderr)
        return EXIT_USAGE


def _extra_errors() -> tuple:
    """Error types of optional parts that also deserve one clear line."""
    out = []
    try:
        from .features.deep import WeightsUnavailableError

        out.append(WeightsUnavailableError)
    except Exception:  # noqa: BLE001 - deep features unavailable: nothing to add
        pass
    from .classifiers import MissingDependencyError
    from .evaluation import EvaluationError

    out += [EvaluationError, MissingDependencyError]
    return tuple(out)
