"""The argument parser of ``leukbench``: its commands, options and the flag of each parameter.

The options and their defaults come from the library (:func:`leukbench.extract_all`,
:func:`leukbench.compare`, :func:`leukbench.summarize` and the constants of the
modules they use), so that the command and the notebook API cannot drift apart.
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

__all__ = ["build_parser", "flags_by_dest", "rejoin_dash_values"]


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



def _library_defaults() -> Dict[str, Any]:
    """Default of each parameter of :func:`~leukbench.extraction.extract_all` and
    :func:`~leukbench.evaluation.compare`, by parameter name.

    The options named like a parameter take their default from here (a
    parameter both functions have, such as ``cache_dir``, has one default).
    """
    from .evaluation import compare
    from .extraction import extract_all

    return {**_signature_defaults(compare), **_signature_defaults(extract_all)}


def _features_help() -> str:
    """Help of --features: the registered extractors, read from the registry."""
    from .features.base import list_extractors

    return ("comma-separated feature sets; a+b concatenates (default: %(default)s). "
            f"Registered: {', '.join(list_extractors())}; any timm model as timm:<model>")



def _add_data_options(p: argparse.ArgumentParser, defaults: Dict[str, Any]) -> None:
    from .datasets import LAYOUTS
    from .extraction import DEFAULT_FEATURES
    from .features.deep import POOLINGS, PRECISIONS, TTA_MODES
    from .features.deep._decode import DECODERS
    from .stain import STAIN_METHODS

    p.add_argument("data", nargs="?", default=defaults["data"],
                   help="image folder or CSV manifest (default: the bundled C-NMC sample)")
    p.add_argument("--layout", default=defaults["layout"], choices=LAYOUTS,
                   help="dataset layout (default: %(default)s, i.e. detected)")
    p.add_argument("--subject-regex", default=defaults["subject_regex"], metavar="RE",
                   help="regex with a capturing group that takes the subject id out of file names")
    p.add_argument("--features", default=DEFAULT_FEATURES, metavar="LIST", help=_features_help())
    p.add_argument("--weights", default=defaults["weights"], metavar="W",
                   help="weights of the deep backbones: imagenet | none (random init) | path to a weights file "
                        "(default: %(default)s; handcrafted features have none)")
    p.add_argument("--segment", action="store_true", default=defaults["segment"],
                   help="segment and crop the cell first (for deep backbones; handcrafted features find "
                        "the cell themselves, and on a crop their size columns lose the cell's size)")
    p.add_argument("--grayscale", action="store_true", default=defaults["grayscale"],
                   help="convert images to grayscale first")
    p.add_argument("--device", default=defaults["device"], metavar="D",
                   help="auto (CUDA when available, else CPU) | cpu | cuda | cuda:N | mps (default: %(default)s)")
    p.add_argument("--precision", default=defaults["precision"], choices=PRECISIONS,
                   help="arithmetic of the deep backbones: auto (float16 autocast on CUDA, float32 "
                        "elsewhere) | float32 | float16 (CUDA) | bfloat16 (autocast; fast on CPUs with "
                        "AVX-512 BF16 or AMX). Autocast features are cached apart (default: %(default)s)")
    p.add_argument("--decode", default=defaults["decode"], choices=DECODERS,
                   help="where the deep backbones' JPEGs are decoded and resized: cpu (PIL in the workers) | gpu "
                        "(torchvision on the device: nvJPEG on CUDA; own cache key) | auto (gpu on CUDA, else cpu) "
                        "(default: %(default)s)")
    p.add_argument("--tta", default=defaults["tta"], choices=TTA_MODES,
                   help="deep features averaged over the image and its mirror image (flip) or the 8 symmetries "
                        "of the square (d4: 8x the network work) (default: %(default)s)")
    p.add_argument("--layers", default=defaults["layers"], metavar="L",
                   help="last | last2 | last3 | stage names (comma-separated): also the pooled outputs of the last "
                        "1 or 2 feature stages of a timm-built backbone (default: %(default)s)")
    p.add_argument("--pooling", default=defaults["pooling"], choices=POOLINGS,
                   help="global pooling of the deep features: avg | gem (generalised mean, p=3) (default: %(default)s)")
    p.add_argument("--stain-norm", default=defaults["stain_norm"], choices=STAIN_METHODS,
                   help="colour normalisation before deep and handcrafted features: none | reinhard | macenko "
                        "(default: %(default)s)")
    p.add_argument("--stain-reference", default=defaults["stain_reference"], metavar="REF",
                   help="the Reinhard reference: fixed (numbers from the bundled C-NMC sample) | dataset (the same "
                        "statistics over a seeded subsample of 256 of the dataset's own images, labels unused) | the "
                        "path of one image; recorded in the cache key (default: %(default)s)")
    p.add_argument("--batch-size", type=_count(1), default=defaults["batch_size"], metavar="N",
                   help="images per network batch (deep backbones; default: 16 on the CPU, 256 on CUDA)")
    p.add_argument("--num-workers", type=_count(0), default=defaults["num_workers"], metavar="N",
                   help="decoding workers: threads between the batches of a network on the CPU, "
                        "processes beside a GPU or for handcrafted features (default: by core count)")
    p.add_argument("--cache-dir", default=defaults["cache_dir"], metavar="DIR",
                   help="feature cache (default: $LEUKBENCH_CACHE_DIR, else $XDG_CACHE_HOME/leukbench, "
                        "else ~/.cache/leukbench)")
    p.add_argument("--chunk-size", type=_count(1), default=defaults["chunk_size"], metavar="N",
                   help="images per cache chunk: about the most a crash or kill can lose; Ctrl-C keeps all "
                        "finished batches (default: %(default)s)")
    p.add_argument("--max-per-subject", type=int, default=defaults["max_per_subject"], metavar="N",
                   help="reduced-data mode: at most N images per subject, chosen at random (seeded)")
    p.add_argument("--max-per-class", type=int, default=defaults["max_per_class"], metavar="N",
                   help="reduced-data mode: at most N images per class, by whole subjects")
    p.add_argument("--fraction", type=float, default=defaults["fraction"], metavar="F",
                   help="reduced-data mode: about F (0 < F <= 1) of each class, by whole subjects; the "
                        "subsample is taken before extraction, shares the cache and is stated in the report")
    p.add_argument("--subsample-seed", type=int, default=defaults["subsample_seed"], metavar="S",
                   help="seed of the reduced-data subsample (default: %(default)s)")
    p.add_argument("--memory-map", action="store_true", default=defaults["memory_map"],
                   help="assemble the feature matrix in a memory-mapped file ($TMPDIR) instead of RAM: "
                        "for matrices near or above the memory, with --battery batches (docs/scaling.md)")
    p.add_argument("--scheduler", default=defaults["scheduler"], metavar="ADDR",
                   help="run on a Dask cluster: tcp://HOST:8786 (a running scheduler) or local:N (a local cluster "
                        "of N worker processes); needs pip install \"leukbench[dask]\" (default: this process)")
    p.add_argument("-q", "--quiet", action="store_true", default=not defaults["progress"],
                   help="no progress bars")



def _add_finetune_options(p: argparse.ArgumentParser, defaults: Dict[str, Any]) -> None:
    """Options of the fine-tuned networks, named in --features as finetuned:<backbone>."""
    g = p.add_argument_group("fine-tuning (--features ...,finetuned:<backbone>; docs/finetuning.md)")
    g.add_argument("--epochs", dest="finetune_epochs", type=_count(1), default=defaults["finetune_epochs"],
                   metavar="N", help="most epochs per fold (default: %(default)s)")
    g.add_argument("--patience", dest="finetune_patience", type=_count(1), default=defaults["finetune_patience"],
                   metavar="P", help="stop after P epochs without a better validation balanced accuracy "
                                     "(default: %(default)s)")
    g.add_argument("--finetune-size", type=_count(16), default=defaults["finetune_size"], metavar="PX",
                   help="input size in pixels; smaller trains faster on a CPU (default: the backbone's own)")
    g.add_argument("--freeze", dest="finetune_freeze", type=_count(0), default=defaults["finetune_freeze"],
                   metavar="K", help="leading backbone stages kept frozen (default: %(default)s)")
    g.add_argument("--max-train-minutes", dest="finetune_max_minutes", type=float,
                   default=defaults["finetune_max_minutes"], metavar="M",
                   help="stop a fold's training after the epoch that passes M minutes (default: no limit)")


def _add_compare_options(p: argparse.ArgumentParser, defaults: Dict[str, Any]) -> None:
    from ._estimators import NORMALIZE_METHODS
    from .classifiers import BATTERIES, DEFAULT_BATTERY
    from .evaluation.options import SCHEMES
    from .schema import DEFAULT_SEED, DEFAULT_SORT

    p.add_argument("--classifiers", default=defaults["classifiers"], metavar="LIST",
                   help="names to run (comma-separated), or -NAME to exclude (default: the battery)")
    p.add_argument("--battery", default=defaults["battery"], choices=BATTERIES,
                   help=f"default: leukbench's {len(DEFAULT_BATTERY)}; all: lazypredict's list of classifiers; "
                        "batches: those that learn from batches of rows (for --memory-map)")
    p.add_argument("--split", default=defaults["split"], choices=SCHEMES,
                   help="cv: subject-aware K-fold; predefined: train split vs test split (default: %(default)s)")
    p.add_argument("--cv", type=int, default=defaults["cv"], metavar="K", help="folds (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=defaults["repeats"], metavar="R",
                   help="repeated CV (default: %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default: %(default)s)")
    p.add_argument("--n-jobs", type=_n_jobs, default=defaults["n_jobs"], metavar="N",
                   help="parallel fits: -1 all usable cores, -2 all but one, 1 one at a time (default: %(default)s); "
                        "each fit runs on one thread, so the table does not depend on it")
    p.add_argument("--timeout", type=float, default=defaults["timeout"], metavar="S",
                   help="stop any single fit after S seconds (recorded as timeout)")
    p.add_argument("--sort", default=DEFAULT_SORT, metavar="METRIC", help="table order (default: '%(default)s')")
    p.add_argument("--positive-label", default=defaults["positive_label"], metavar="LABEL",
                   help="positive class for binary F1/precision/recall (default: 'all' when present)")
    p.add_argument("--alpha", type=float, default=defaults["alpha"], metavar="A",
                   help="level of the statistics: 1-A intervals; a row whose test against the best gives "
                        "p >= A is tied with it (default: %(default)s)")
    p.add_argument("--n-bootstrap", type=_count(0), default=defaults["n_bootstrap"], metavar="N",
                   help="subject-level bootstrap resamples of the confidence intervals; 0: none "
                        "(default: %(default)s)")
    p.add_argument("--tune", action="store_true", default=defaults["tune"],
                   help="also run each classifier that has a search space tuned, as '<name> (tuned)': a random "
                        "search on subject-aware inner folds of each outer training fold only; the parameters "
                        "chosen per fold go to folds.csv")
    p.add_argument("--tune-trials", type=_count(1), default=defaults["tune_trials"], metavar="N",
                   help="candidates each search tries, at most (default: %(default)s)")
    p.add_argument("--reduce", default=defaults["reduce"], metavar="R",
                   help="none | pca:K | pca-whiten:K: PCA of the features before every classifier, fitted on each "
                        "training fold only; rows are named '<classifier> [pca:K]' (default: %(default)s)")
    p.add_argument("--normalize", default=defaults["normalize"], choices=NORMALIZE_METHODS,
                   help="none | l2 | power (signed square root, then L2) of each feature vector before every "
                        "classifier (and before --reduce) (default: %(default)s)")
    p.add_argument("--tune-budget", type=float, default=defaults["tune_budget"], metavar="S",
                   help="seconds each search (one classifier, one outer fold) may take, checked between "
                        "candidates; the refit comes on top and --timeout still stops the whole tuned fit "
                        "(default: no limit)")
    p.add_argument("--keep-duplicates", action="store_true", default=not defaults["merge_duplicates"],
                   help="do not merge subjects that share identical images (report only)")
    _add_finetune_options(p, defaults)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="results folder (default: ./leukbench-results/<dataset>-<time>)")



def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``leukbench`` and its commands ``extract`` and ``compare``."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="leukbench",
        description="Honest, subject-aware comparisons of features and classifiers "
                    "for leukemic vs healthy blood-cell images.",
    )
    parser.add_argument("--version", action="version", version=f"leukbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    defaults = _library_defaults()

    ex = sub.add_parser("extract", help="compute (or update) the cached feature matrix of a dataset")
    _add_data_options(ex, defaults)
    ex.add_argument("--out", default=None, metavar="DIR",
                    help="also write each feature set to DIR/<name>.parquet (FeatureSet.load reads it)")

    cp = sub.add_parser("compare", help="extract what is missing, then compare classifiers with subject-aware CV")
    _add_data_options(cp, defaults)
    _add_compare_options(cp, defaults)
    cp.add_argument("--save-best", default=None, metavar="DIR",
                    help="after the table, train its best row on all labelled images and write the model "
                         "bundle to DIR (a folder, or a .zip), its card carrying the row's cross-validated scores")
    _add_summarize_parser(sub, defaults)
    _add_model_parsers(sub, defaults)
    return parser


def _add_model_parsers(sub, defaults: Dict[str, Any]) -> None:
    """``train`` (a row of the table on all labelled images) and ``predict`` (new images with a bundle)."""
    from .datasets import LAYOUTS
    from .models import predict_images, train

    own = _signature_defaults(train)
    tr = sub.add_parser("train", help="fit one feature set and classifier on all labelled images; write a model bundle")
    _add_data_options(tr, defaults)
    tr.add_argument("--classifier", default=own["classifier"], metavar="NAME",
                    help="a classifier of the battery, 'NAME (tuned)', or a table row with post-processing such "
                         "as 'GaussianNB [power, pca:3]'; end-to-end with --features finetuned:<backbone> "
                         "(default: %(default)s)")
    tr.add_argument("--seed", type=int, default=own["seed"], help="seed of the classifier (default: %(default)s)")
    _add_finetune_options(tr, own)  # --features finetuned:<backbone> --classifier end-to-end
    tr.add_argument("--positive-label", default=own["positive_label"], metavar="LABEL",
                    help="positive class of a binary problem (default: 'all' when present)")
    tr.add_argument("--out", default=None, metavar="DIR",
                    help="model bundle: a folder, or a path ending in .zip "
                         "(default: ./leukbench-models/<dataset>-<time>)")
    pr_defaults = _signature_defaults(predict_images)
    pr = sub.add_parser("predict", help="predict new images with a model bundle written by train or --save-best")
    pr.add_argument("model", metavar="MODEL", help="the model bundle: a folder or .zip")
    pr.add_argument("data", nargs="+", metavar="DATA_OR_IMAGES",
                    help="a folder (class folders give labels and metrics), a CSV manifest, or image files")
    pr.add_argument("--out", default="predictions.csv", metavar="CSV",
                    help="predictions CSV; plots/example_predictions.png goes beside it (default: %(default)s)")
    pr.add_argument("--cache-dir", default=pr_defaults["cache_dir"], metavar="DIR",
                    help="feature cache (default: the one extract uses)")
    pr.add_argument("--device", default=pr_defaults["device"], metavar="D", help="auto | cpu | cuda | cuda:N | mps")
    pr.add_argument("--batch-size", type=_count(1), default=pr_defaults["batch_size"], metavar="N",
                    help="images per network batch (deep backbones)")
    pr.add_argument("--num-workers", type=_count(0), default=pr_defaults["num_workers"], metavar="N",
                    help="decoding workers (default: by core count)")
    pr.add_argument("--layout", default=pr_defaults["layout"], choices=LAYOUTS, help="dataset layout of a folder")
    pr.add_argument("--subject-regex", default=pr_defaults["subject_regex"], metavar="RE",
                    help="regex that takes the subject id out of file names")
    pr.add_argument("-q", "--quiet", action="store_true", default=not pr_defaults["progress"], help="no progress bars")



def _add_summarize_parser(sub, defaults: Dict[str, Any]) -> None:
    from .reporting import summarize
    from .schema import DEFAULT_SORT

    own = _signature_defaults(summarize)
    sm = sub.add_parser("summarize", help="rank the rows of several finished comparisons together "
                                          "(Friedman test, critical-difference diagram)")
    sm.add_argument("result_dirs", nargs="+", metavar="RESULT_DIR",
                    help="results folders written by 'leukbench compare' (2 or more)")
    sm.add_argument("--metric", default=own.get("metric", DEFAULT_SORT), metavar="METRIC",
                    help="the table column to rank by (default: '%(default)s')")
    sm.add_argument("--alpha", type=float, default=own.get("alpha", defaults["alpha"]), metavar="A",
                    help="level of the Friedman and Nemenyi tests (default: %(default)s)")
    sm.add_argument("--out", default=None, metavar="DIR",
                    help="where ranking.md, ranking.csv and plots/ go (default: ./leukbench-results/summary-<time>)")



def _signature_defaults(function) -> Dict[str, Any]:
    import inspect

    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not p.empty}



def rejoin_dash_values(argv: List[str]) -> List[str]:
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



def flags_by_dest(parser: argparse.ArgumentParser, command: str) -> Dict[str, str]:
    """Each option's ``dest`` (the library's parameter name) -> its long flag, read from ``parser``.

    The options of ``command`` come first, then those of the other commands.
    """
    # argparse has no public way to list a parser's actions; _actions is what it iterates itself
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    ordered = [commands[command]] + [p for name, p in commands.items() if name != command]
    flags: Dict[str, str] = {}
    for sub in ordered:
        for action in sub._actions:
            long = [o for o in action.option_strings if o.startswith("--")]
            if long:
                flags.setdefault(action.dest, long[0])
    return flags
