"""The ``leukbench`` command line: ``extract``, ``compare``, ``summarize``, ``train`` and ``predict``.

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

import contextlib
import errno
import os
import shlex
import sys
import time
from pathlib import Path
from typing import List, Optional

from ._parser import build_parser, flags_by_dest, rejoin_dash_values

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
        decode=args.decode,
        tta=args.tta,
        layers=args.layers,
        pooling=args.pooling,
        stain_norm=args.stain_norm,
        stain_reference=args.stain_reference,
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
        scheduler=args.scheduler,
        memory_map=args.memory_map,
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


def _split_finetuned(features: str):
    """``--features``: the backbones named ``finetuned:<backbone>``, and the rest to extract (may be empty)."""
    from .finetune import finetuned_backbone

    items = [f.strip() for f in str(features).split(",") if f.strip()]
    tuned = [finetuned_backbone(f) for f in items if finetuned_backbone(f) is not None]
    return tuned, ",".join(f for f in items if finetuned_backbone(f) is None)


def _image_options(args) -> dict:
    """The image pre-processing of the frozen features, applied to the fine-tuned networks' images too."""
    from .exceptions import InvalidParameterError

    reference = getattr(args, "stain_reference", "fixed")
    if reference not in (None, "fixed"):
        raise InvalidParameterError(f"--stain-reference {reference} is not supported with finetuned:<backbone> "
                                    "(the networks normalise with the fixed reference); drop it or the fine-tuned "
                                    "network", parameter="stain_reference")
    return {"segment": args.segment, "grayscale": args.grayscale, "stain_norm": args.stain_norm}


def cmd_compare(args) -> int:
    from . import datasets
    from .evaluation import check_dataset, check_options, compare
    from .reporting import markdown_summary

    data = args.data if args.data is not None else datasets.sample_root()
    # everything that can be checked is checked before any extraction
    check_options(classifiers=args.classifiers, battery=args.battery, split=args.split, cv=args.cv,
                  repeats=args.repeats, sort=args.sort, timeout=args.timeout, n_jobs=args.n_jobs,
                  alpha=args.alpha, n_bootstrap=args.n_bootstrap, tune=args.tune, tune_trials=args.tune_trials,
                  tune_budget=args.tune_budget, reduce=args.reduce, normalize=args.normalize)
    out = Path(args.out) if args.out else Path("leukbench-results") / (
        f"{Path(data).name or 'data'}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    _check_writable_folder(out, "--out")
    if args.save_best:
        _check_model_target(args.save_best, "--save-best")
    table = datasets.discover(data, layout=args.layout, subject_regex=args.subject_regex)
    dataset_options = dict(split=args.split, positive_label=args.positive_label, source=data)
    classes = check_dataset(table, **dataset_options)
    finetune, args.features = _split_finetuned(args.features)
    image_options = _image_options(args) if finetune else {}
    if args.features:
        sets = list(_extract(args, table).values())
    else:  # finetuned:<backbone> alone: the images, no feature extracted
        from .finetune._images import image_set

        sets = [image_set(table, num_workers=args.num_workers, progress=not args.quiet)]
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
        finetune=finetune or None,
        finetune_epochs=args.finetune_epochs,
        finetune_patience=args.finetune_patience,
        finetune_size=args.finetune_size,
        finetune_freeze=args.finetune_freeze,
        finetune_max_minutes=args.finetune_max_minutes,
        finetune_options={"weights": args.weights, "device": args.device, "precision": args.precision,
                          **image_options},
        reduce=args.reduce,
        normalize=args.normalize,
        cache_dir=args.cache_dir or None,  # None: the default cache folder
        progress=not args.quiet,
        scheduler=args.scheduler,
    )
    result.params["command"] = "leukbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print()  # the table first: a disk that fills up while saving must not lose it
    print(markdown_summary(result).rstrip("\n"), flush=True)
    result.save(out, feature_sets=sets)
    print(f"\nresults: {out}/ (report.html, table.md, table.csv, folds.csv, predictions.csv, "
          "per_class.csv, calibration.csv, audit_pairs.csv, skipped_images.csv, run.json, plots/)")
    if args.save_best:
        from .models import best_row, train_best

        model, best = train_best(result, sets), best_row(result)
        if (best["Feature Set"], best["Model"]) != (model.feature_set, model.classifier):
            print(f"note: the best row {best['Feature Set']} / {best['Model']} is a fine-tuned network's features "
                  "with a battery classifier, which a model bundle does not hold; saving the best bundlable row "
                  "instead")
        print(f"best row {model.feature_set} / {model.classifier} trained on all "
              f"{model.card['training_data']['images']} labelled images: {model.save(args.save_best)} "
              "(manifest.json, model.md, model.json)")
    return EXIT_OK


def cmd_train(args) -> int:
    """``leukbench train``: one feature set and classifier fitted on all labelled images, as a model bundle."""
    from . import datasets
    from .models import check_train, fit_model
    from .models.finetuned import is_finetuned

    check_train(args.features, args.classifier)
    data = args.data if args.data is not None else datasets.sample_root()
    out = Path(args.out) if args.out else Path("leukbench-models") / (
        f"{Path(data).name or 'data'}-{time.strftime('%Y%m%d-%H%M%S')}")
    _check_model_target(out, "--out")
    if is_finetuned(args.features):  # a fine-tuned network: the images, no extraction
        from ._parser import _library_defaults
        from .models import train

        defaults = _library_defaults()  # an extraction option given is refused by train, not ignored
        given = {k: getattr(args, k) for k in ("segment", "grayscale", "decode", "tta", "layers", "pooling",
                                               "stain_norm", "stain_reference", "max_per_subject", "max_per_class",
                                               "fraction", "chunk_size")
                 if k in defaults and getattr(args, k) != defaults[k]}
        model = train(data, args.features, args.classifier, seed=args.seed, positive_label=args.positive_label,
                      progress=not args.quiet, finetune_epochs=args.finetune_epochs,
                      finetune_patience=args.finetune_patience, finetune_size=args.finetune_size,
                      finetune_freeze=args.finetune_freeze, finetune_max_minutes=args.finetune_max_minutes,
                      weights=args.weights, device=args.device, precision=args.precision, cache_dir=args.cache_dir,
                      num_workers=args.num_workers, layout=args.layout, subject_regex=args.subject_regex, **given)
    else:
        fs = next(iter(_extract(args).values()))
        model = fit_model(fs, args.classifier, seed=args.seed, positive_label=args.positive_label)
    print(f"{model!r}\nmodel: {model.save(out)} (manifest.json, model.md, model.json); "
          f"predict with: leukbench predict {shlex.quote(str(out))} IMAGES...")
    return EXIT_OK


def cmd_predict(args) -> int:
    """``leukbench predict``: the predictions of a model bundle on new images, with metrics when labelled."""
    from .models import load_model
    from .models.predicting import check_output

    out = Path(args.out)
    check_output(out, "--out")
    _check_writable_folder(out.parent if str(out.parent) else Path("."), "--out")
    model = load_model(args.model)
    result = model.predictions(args.data, cache_dir=args.cache_dir, device=args.device, batch_size=args.batch_size,
                               num_workers=args.num_workers, layout=args.layout, subject_regex=args.subject_regex,
                               progress=not args.quiet)
    print("\n".join(result.summary_lines()))
    if not len(result.table):
        return _error(f"no image of {' '.join(args.data)} could be read; see the skipped reasons above", EXIT_NOTHING)
    print(f"predictions: {', '.join(str(p) for p in result.save(out))}")
    return EXIT_OK


def _check_model_target(path, option: str) -> None:
    """Fail now, not after the work, when a model bundle cannot be written to ``path``."""
    from .models.bundle import check_target

    path = Path(path)
    check_target(path, option)
    _check_writable_folder(path.parent if path.suffix.lower() == ".zip" else path, option)


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
    args = parser.parse_args(rejoin_dash_values(sys.argv[1:] if argv is None else argv))
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        with terminate_as_interrupt(), _plain_warnings():  # SIGTERM (SLURM, Kubernetes, timeout) keeps work too
            if args.command == "extract":
                return cmd_extract(args)
            if args.command == "summarize":
                return cmd_summarize(args)
            if args.command in ("train", "predict"):
                return cmd_train(args) if args.command == "train" else cmd_predict(args)
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
        flag = flags_by_dest(parser, args.command).get(exc.parameter)
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


@contextlib.contextmanager
def _plain_warnings():
    """Within the block, leukbench's own warnings print as ``leukbench: warning: <message>``.

    They are messages for the user (a manifest that is not UTF-8, a huge image),
    not for a developer: no source file, line number or code line. Warnings of
    other packages keep Python's format.
    """
    import warnings

    package = str(Path(__file__).resolve().parent)
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if not str(filename).startswith(package):
            return previous(message, category, filename, lineno, file, line)
        print(f"leukbench: warning: {message}", file=sys.stderr if file is None else file)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


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


