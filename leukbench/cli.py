"""The ``leukbench`` command line: ``extract``, ``compare`` and ``summarize``.

The options and their defaults come from the library (:func:`leukbench.extract`,
:func:`leukbench.compare` and the constants of the modules they use), so that
the command and the notebook API cannot drift apart. Errors the user can fix
(a :class:`~leukbench.exceptions.LeukbenchError`, or a full disk / denied
permission) are one line on stderr and exit status 2; anything else is a bug,
shown with its traceback and exit status 1.

Example
-------
>>> from leukbench.cli import build_parser
>>> args = build_parser().parse_args(["compare", "--cv", "3"])
>>> args.cv, args.repeats, args.seed
(3, 1, 42)
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

#: Exit statuses: done; no image could be read (or a bug); bad input; interrupted.
EXIT_OK, EXIT_NOTHING, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_BUG = 1
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a pipe closed early

#: What to do about an OSError that the machine caused, not leukbench, by errno name.
_ENVIRONMENT_FIXES = {
    "ENOSPC": "free some disk space, or give --cache-dir / --out a folder on another disk",
    "EDQUOT": "free some space within your disk quota, or give --cache-dir / --out a folder elsewhere",
    "EACCES": "check the permissions of the file and its folder, or give --cache-dir / --out a writable folder",
    "EPERM": "check the permissions of the file and its folder, or give --cache-dir / --out a writable folder",
    "EROFS": "the file system is read-only; give --cache-dir / --out a folder on a writable one",
}
_FIX_BY_ERRNO = {getattr(errno, name): fix for name, fix in _ENVIRONMENT_FIXES.items() if hasattr(errno, name)}


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
    import inspect

    from .evaluation import compare
    from .extraction import extract_all

    defaults: Dict[str, Any] = {}
    for function in (extract_all, compare):
        for name, param in inspect.signature(function).parameters.items():
            if param.default is not param.empty:
                defaults.setdefault(name, param.default)
    return defaults


def _features_help() -> str:
    """Help of --features: the registered extractors, read from the registry."""
    from .features.base import list_extractors

    return ("comma-separated feature sets; a+b concatenates (default: %(default)s). "
            f"Registered: {', '.join(list_extractors())}; any timm model as timm:<model>")


def _add_data_options(p: argparse.ArgumentParser, defaults: Dict[str, Any]) -> None:
    from .datasets import LAYOUTS
    from .extraction import DEFAULT_FEATURES
    from .features.deep import PRECISIONS

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
    p.add_argument("--batch-size", type=_count(1), default=defaults["batch_size"], metavar="N",
                   help="images per network batch (deep backbones; default: 16 on the CPU, 32 on a GPU)")
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
    p.add_argument("-q", "--quiet", action="store_true", default=not defaults["progress"],
                   help="no progress bars")


def _add_compare_options(p: argparse.ArgumentParser, defaults: Dict[str, Any]) -> None:
    from .classifiers import BATTERIES, DEFAULT_BATTERY
    from .evaluation.options import SCHEMES
    from .schema import DEFAULT_SEED, DEFAULT_SORT

    p.add_argument("--classifiers", default=defaults["classifiers"], metavar="LIST",
                   help="names to run (comma-separated), or -NAME to exclude (default: the battery)")
    p.add_argument("--battery", default=defaults["battery"], choices=BATTERIES,
                   help=f"default: leukbench's {len(DEFAULT_BATTERY)}; all: lazypredict's list of classifiers")
    p.add_argument("--split", default=defaults["split"], choices=SCHEMES,
                   help="cv: subject-aware K-fold; predefined: train split vs test split (default: %(default)s)")
    p.add_argument("--cv", type=int, default=defaults["cv"], metavar="K", help="folds (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=defaults["repeats"], metavar="R",
                   help="repeated CV (default: %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default: %(default)s)")
    p.add_argument("--n-jobs", type=_n_jobs, default=defaults["n_jobs"], metavar="N",
                   help="parallel fits (default: %(default)s; -1 all cores)")
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
    p.add_argument("--tune-budget", type=float, default=defaults["tune_budget"], metavar="S",
                   help="seconds each search (one classifier, one outer fold) may take, checked between "
                        "candidates; the refit comes on top and --timeout still stops the whole tuned fit "
                        "(default: no limit)")
    p.add_argument("--keep-duplicates", action="store_true", default=not defaults["merge_duplicates"],
                   help="do not merge subjects that share identical images (report only)")
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
    _add_summarize_parser(sub, defaults)
    return parser


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


def _extract(args, data=None):
    """Run :func:`~leukbench.extraction.extract_all` with the data options; print its summaries."""
    from . import datasets
    from .extraction import extract_all

    result = extract_all(
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
        max_per_subject=args.max_per_subject,
        max_per_class=args.max_per_class,
        fraction=args.fraction,
        subsample_seed=args.subsample_seed,
    )
    first = next(iter(result.feature_sets.values()))
    if "subsample" in first.provenance:
        print(datasets.subsample_line(first.provenance["subsample"]))
    for summary in result.summaries:
        print("\n".join(summary.lines()))
    return result.feature_sets


def cmd_extract(args) -> int:
    from . import datasets

    t0 = time.perf_counter()
    data = args.data if args.data is not None else datasets.sample_root()
    if args.out:
        _check_writable_folder(args.out, "--out")
    for name, fs in _extract(args).items():
        print(f"{name}: {fs!r}")
        if args.out:
            print(f"  written to {fs.save(Path(args.out) / f'{name}.parquet')}")
    print(f"done in {time.perf_counter() - t0:.1f} s ({data})")
    return EXIT_OK


def cmd_compare(args) -> int:
    from . import datasets
    from .evaluation import check_dataset, check_options, compare
    from .reporting import markdown_summary

    data = args.data if args.data is not None else datasets.sample_root()
    # everything that can be checked is checked before any extraction
    check_options(classifiers=args.classifiers, battery=args.battery, split=args.split, cv=args.cv,
                  repeats=args.repeats, sort=args.sort, timeout=args.timeout, n_jobs=args.n_jobs,
                  alpha=args.alpha, n_bootstrap=args.n_bootstrap, tune=args.tune, tune_trials=args.tune_trials,
                  tune_budget=args.tune_budget)
    out = Path(args.out) if args.out else Path("leukbench-results") / (
        f"{Path(data).name or 'data'}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    _check_writable_folder(out, "--out")
    table = datasets.discover(data, layout=args.layout, subject_regex=args.subject_regex)
    dataset_options = dict(split=args.split, positive_label=args.positive_label, source=data)
    classes = check_dataset(table, **dataset_options)
    sets = list(_extract(args, table).values())
    check_dataset(sets, classes=classes, **dataset_options)  # no class lost to unreadable images
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
        alpha=args.alpha,
        n_bootstrap=args.n_bootstrap,
        tune=args.tune,
        tune_trials=args.tune_trials,
        tune_budget=args.tune_budget,
        cache_dir=args.cache_dir or None,  # None: the default cache folder
        progress=not args.quiet,
    )
    result.params["command"] = "leukbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print()  # the table first: a disk that fills up while saving must not lose it
    print(markdown_summary(result).rstrip("\n"), flush=True)
    result.save(out, feature_sets=sets)
    print(f"\nresults: {out}/ (report.html, table.md, table.csv, folds.csv, predictions.csv, "
          "per_class.csv, calibration.csv, audit_pairs.csv, skipped_images.csv, run.json, plots/)")
    return EXIT_OK


def cmd_summarize(args) -> int:
    """``leukbench summarize``: one ranking over several results folders."""
    from .reporting import summarize

    out = Path(args.out) if args.out else Path("leukbench-results") / f"summary-{time.strftime('%Y%m%d-%H%M%S')}"
    _check_writable_folder(out, "--out")
    summary = summarize(args.result_dirs, metric=args.metric, alpha=args.alpha)
    summary.save(out)
    print(summary.to_markdown().rstrip("\n"))
    print(f"\nresults: {out}/ (ranking.md, ranking.csv, plots/critical_difference.png)")
    return EXIT_OK


def _check_writable_folder(path, option: str) -> None:
    """Fail now, not after the work, when ``path`` cannot become a results folder.

    Tried for real: the missing folders are created and removed again, an
    existing folder gets a temporary file.

    Raises
    ------
    ReportError
        Naming ``path`` and ``option``, the flag to give another folder.
    """
    import tempfile

    from .exceptions import ReportError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ReportError(f"{path}: exists and is not a folder; give {option} a folder to write into")
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
        raise ReportError(f"{path}: cannot write a folder here ({exc.strerror or exc}); "
                          f"give {option} a writable folder") from None
    finally:
        for m in reversed(created):
            try:
                m.rmdir()
            except OSError:
                pass


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
    """Entry point of the ``leukbench`` command; returns the exit status.

    0 when done; 1 when no image could be read (the summaries say why) or
    for a bug (its traceback and a request to report it); 2 for input the
    user can fix or a machine that refuses to write (one line on stderr
    naming the file or option and the fix); 130 when interrupted (Ctrl-C),
    143 when terminated (SIGTERM), finished work kept either way.

    Example
    -------
    >>> main(["compare", "--cv", "1"])  # one line on stderr: the folds must be at least 2
    2
    """
    from ._signals import EXIT_TERMINATED, Terminated, terminate_as_interrupt
    from .exceptions import ExtractionError, InvalidParameterError, LeukbenchError

    try:
        parser = build_parser()
    except Exception:  # noqa: BLE001 - the options could not be read from the library: a bug
        return _report_bug()
    args = parser.parse_args(_rejoin_dash_values(sys.argv[1:] if argv is None else argv))
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        with terminate_as_interrupt():  # SIGTERM (SLURM, Kubernetes, timeout) keeps finished work too
            if args.command == "extract":
                return cmd_extract(args)
            if args.command == "summarize":
                return cmd_summarize(args)
            return cmd_compare(args)
    except ExtractionError as exc:
        for s in exc.summaries:  # what was found and why it was skipped
            print("\n".join(s.lines()))
        return _error(str(exc), EXIT_NOTHING)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as Terminated
        print("\nleukbench: interrupted; finished work is cached, run the same command to resume",
              file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    except InvalidParameterError as exc:  # said with the flag: --cv, not cv
        flag = _flags_by_dest(parser, args.command).get(exc.parameter)
        return _error(exc.renamed(flag) if flag else str(exc), EXIT_USAGE)
    except LeukbenchError as exc:  # one clear line, never a traceback
        return _error(str(exc), EXIT_USAGE)
    except BrokenPipeError:  # `leukbench compare | head`: the reader left, nothing more to say
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        if exc.errno in _FIX_BY_ERRNO:  # disk full, permission denied...: not a bug
            return _error(_environment_message(exc), EXIT_USAGE)
        return _report_bug()
    except Exception:  # noqa: BLE001 - anything else is a bug: show it
        return _report_bug()


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (captured): nothing to flush
        pass


def _error(message: str, status: int) -> int:
    print(f"leukbench: error: {message}", file=sys.stderr)
    return status


def _environment_message(exc: OSError) -> str:
    """One line for an OSError of the machine: the file, what went wrong, what to do."""
    reason = exc.strerror or os.strerror(exc.errno)
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{reason}; {_FIX_BY_ERRNO[exc.errno]}"


def _report_bug() -> int:
    """Show the exception being handled as the bug it is: its traceback and where it should go."""
    import traceback

    from . import __version__

    traceback.print_exc()
    print(f"leukbench: internal error: this is a bug in leukbench {__version__}; please report it "
          "with the traceback above and the command you ran", file=sys.stderr)
    return EXIT_BUG


def _flags_by_dest(parser: argparse.ArgumentParser, command: str) -> Dict[str, str]:
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
