"""The command line: exit statuses, one-line errors, bugs shown as bugs, defaults shared with the library."""

from __future__ import annotations

import errno
import functools
import inspect
import json
import sys

import pandas as pd
import pytest

import leukbench
from leukbench import cli
from leukbench.classifiers import BATTERIES
from leukbench.datasets import LAYOUTS, load_sample
from leukbench.evaluation.options import SCHEMES
from leukbench.exceptions import (
    CacheError,
    DatasetError,
    ExtractionError,
    InvalidParameterError,
    MissingDependencyError,
    UnknownClassifierError,
)
from leukbench.features.deep import PRECISIONS

#: Options of the command line that are no parameter of extract() or compare().
CLI_ONLY = {"command", "out", "quiet", "keep_duplicates", "save_best"}


def run(argv, capsys):
    """Exit status, stdout and stderr of ``leukbench ARGV``."""
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def extract_raises(monkeypatch):
    """Make the library's extract_all(), which both commands call, raise the exception given.

    The stand-in keeps extract_all's signature, where the command line reads its defaults.
    """
    import leukbench.extraction

    real = leukbench.extraction.extract_all

    def patch(exc):
        @functools.wraps(real)
        def fail(*args, **kwargs):
            raise exc

        monkeypatch.setattr(leukbench.extraction, "extract_all", fail)

    return patch


def invalid(name, requirement):
    """The error the library's parameter checks raise for ``name`` (its text and its parts)."""
    return InvalidParameterError(f"{name} {requirement}", parameter=name, requirement=requirement)


def raising_function(exc):
    def fail(*args, **kwargs):
        raise exc

    return fail


def extract_argv(tmp_path):
    return ["extract", "--cache-dir", str(tmp_path / "c"), "-q"]


def compare_argv(tmp_path):
    return ["compare", "--cache-dir", str(tmp_path / "c"), "-q", "--out", str(tmp_path / "r")]


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("bug", [RuntimeError("boom"), ValueError("boom"), KeyError("boom"),
                                 FileNotFoundError(errno.ENOENT, "No such file or directory", "boom.parquet")])
def test_a_bug_shows_its_traceback_and_asks_for_a_report(tmp_path, capsys, extract_raises, bug):
    extract_raises(bug)
    code, _, err = run(extract_argv(tmp_path), capsys)
    assert code == 1
    assert "Traceback (most recent call last)" in err and f"{type(bug).__name__}: " in err and "boom" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("leukbench: internal error:") and "bug" in last and "report" in last
    assert leukbench.__version__ in last
    assert err.index("Traceback") < err.index("leukbench: internal error")  # the request comes last


def test_leukbench_warnings_are_one_plain_line_and_others_keep_their_format(tmp_path, capsys, monkeypatch,
                                                                          recwarn):
    import warnings

    import leukbench.extraction
    from leukbench.datasets import _layouts

    real = leukbench.extraction.extract_all

    @functools.wraps(real)
    def warn_then_fail(*args, **kwargs):
        # as if raised in leukbench's own code (datasets/_layouts.py), then by another package
        warnings.warn_explicit("m.csv: not UTF-8; read as Latin-1", UserWarning, _layouts.__file__, 239)
        warnings.warn_explicit("lbfgs failed to converge", UserWarning, "/site-packages/sklearn/x.py", 7)
        raise DatasetError("stop here")

    monkeypatch.setattr(leukbench.extraction, "extract_all", warn_then_fail)
    code, _, err = run(extract_argv(tmp_path), capsys)
    assert code == 2
    lines = err.splitlines()
    assert lines[0] == "leukbench: warning: m.csv: not UTF-8; read as Latin-1"
    assert "lbfgs" not in err  # another package's warning goes to Python's own display (pytest records it)
    assert [str(w.message) for w in recwarn] == ["lbfgs failed to converge"]
    assert lines[-1] == "leukbench: error: stop here"
    assert warnings.showwarning.__module__ == "warnings"  # put back after the command


def test_a_bug_while_reading_the_options_is_shown_as_a_bug(capsys, monkeypatch):
    import leukbench.features.base as base

    monkeypatch.setattr(base, "list_extractors", raising_function(RuntimeError("registry broken")))
    code, _, err = run(["extract", "--help"], capsys)
    assert code == 1 and "RuntimeError: registry broken" in err
    assert err.strip().splitlines()[-1].startswith("leukbench: internal error:")


@pytest.mark.parametrize("error", [
    DatasetError("/data/x: no such folder; give the folder that holds the class sub-folders"),
    UnknownClassifierError("unknown classifier 'Nope'; available: SVC"),
    MissingDependencyError("battery='all' needs lazypredict: pip install 'leukbench[lazypredict]'"),
    CacheError("/cache: the cache folder kept changing; run again"),
])
def test_a_leukbench_error_is_one_line_and_exit_2(tmp_path, capsys, extract_raises, error):
    extract_raises(error)
    code, _, err = run(extract_argv(tmp_path), capsys)
    assert code == 2
    assert err == f"leukbench: error: {error.args[0]}\n"  # no traceback, no quotes around a KeyError's text


def test_an_invalid_parameter_is_named_by_its_flag(tmp_path, capsys, extract_raises):
    extract_raises(invalid("cv", "must be at least 2 (got 1)"))
    code, _, err = run(compare_argv(tmp_path), capsys)
    assert (code, err) == (2, "leukbench: error: --cv must be at least 2 (got 1)\n")
    extract_raises(invalid("chunk_size", "must be at least 1 (got 0)"))
    code, _, err = run(extract_argv(tmp_path), capsys)
    assert (code, err) == (2, "leukbench: error: --chunk-size must be at least 1 (got 0)\n")
    extract_raises(invalid("feature_sets", "must not be empty"))  # no flag sets it: said as the library says it
    code, _, err = run(extract_argv(tmp_path), capsys)
    assert (code, err) == (2, "leukbench: error: feature_sets must not be empty\n")


@pytest.mark.parametrize("exc, fix", [
    (PermissionError(errno.EACCES, "Permission denied", "/results/run/table.csv"), "check the permissions"),
    (PermissionError(errno.EPERM, "Operation not permitted", "/results/run/table.csv"), "check the permissions"),
    (OSError(errno.ENOSPC, "No space left on device", "/results/run/table.csv"), "free some disk space"),
    (OSError(errno.EDQUOT, "Disk quota exceeded", "/results/run/table.csv"), "disk quota"),
    (OSError(errno.EROFS, "Read-only file system", "/results/run/table.csv"), "read-only"),
])
def test_the_machine_refusing_to_write_is_one_line_naming_the_file(tmp_path, capsys, extract_raises, exc, fix):
    extract_raises(exc)
    code, _, err = run(extract_argv(tmp_path), capsys)
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert err.startswith(f"leukbench: error: /results/run/table.csv: {exc.strerror}; ") and fix in err


def test_a_full_disk_without_a_file_name_is_still_one_line(tmp_path, capsys, extract_raises):
    extract_raises(OSError(errno.ENOSPC, "No space left on device"))
    code, _, err = run(extract_argv(tmp_path), capsys)
    assert code == 2 and err.startswith("leukbench: error: No space left on device; free some disk space")


def test_nothing_readable_still_prints_the_summaries_and_exits_1(tmp_path, capsys, extract_raises):
    class Summary:
        def lines(self):
            return ["images found 2, extracted 0, from cache 0, skipped 2"]

    extract_raises(ExtractionError("/data: no image could be read for handcrafted", [Summary()]))
    code, out, err = run(extract_argv(tmp_path), capsys)
    assert code == 1 and "images found 2, extracted 0" in out
    assert err == "leukbench: error: /data: no image could be read for handcrafted\n"


def test_an_interrupt_says_how_to_resume(tmp_path, capsys, extract_raises):
    extract_raises(KeyboardInterrupt())
    code, _, err = run(extract_argv(tmp_path), capsys)
    assert code == 130 and "interrupted; finished work is cached" in err and "Traceback" not in err


def test_an_out_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys, extract_raises):
    extract_raises(AssertionError("extract() must not run"))
    (tmp_path / "a-file").write_text("x")
    code, _, err = run([*extract_argv(tmp_path), "--out", str(tmp_path / "a-file")], capsys)
    assert code == 2 and err == (f"leukbench: error: {tmp_path / 'a-file'}: exists and is not a folder; "
                                 "give --out a folder to write into\n")
    code, _, err = run([*extract_argv(tmp_path), "--out", str(tmp_path / "a-file" / "x")], capsys)
    assert code == 2 and "cannot write a folder here" in err and "give --out a writable folder" in err


def test_a_bad_subject_regex_is_named_by_its_flag(cnmc_folders, tmp_path, capsys):
    code, out, err = run(["extract", str(cnmc_folders), "--subject-regex", "P[0-9]+",
                          "--cache-dir", str(tmp_path / "c"), "-q"], capsys)
    assert code == 2 and "images found" not in out
    assert err.startswith("leukbench: error: --subject-regex 'P[0-9]+' has no capturing group; write e.g.")


def test_no_command_prints_the_help(capsys):
    code, out, _ = run([], capsys)
    assert code == 2 and "extract" in out and "compare" in out


# ---------------------------------------------------------------------------
# options from the library
# ---------------------------------------------------------------------------


def test_extract_help_lists_the_registered_extractors(capsys, monkeypatch):
    import leukbench.features.base as base

    registered = base.list_extractors() + ["my_own_extractor"]  # a name only the registry knows
    monkeypatch.setattr(base, "list_extractors", lambda: list(registered))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["extract", "--help"])
    assert exit_.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    for name in registered:
        assert name in help_text, name
    assert "timm:<model>" in help_text


def _defaults(function):
    return {n: p.default for n, p in inspect.signature(function).parameters.items() if p.default is not p.empty}


@pytest.mark.parametrize("command", ["extract", "compare"])
def test_every_option_has_the_default_of_its_library_parameter(command):
    from leukbench import compare, extract

    options = vars(cli.build_parser().parse_args([command]))
    library = _defaults(extract) if command == "extract" else {**_defaults(compare), **_defaults(extract)}
    assert set(options) - CLI_ONLY <= set(library), "an option that is no parameter of the library"
    for name in set(options) - CLI_ONLY:
        assert options[name] == library[name], (command, name, options[name], library[name])
    assert options["quiet"] is not library["progress"]
    if command == "compare":
        assert options["keep_duplicates"] is not library["merge_duplicates"]
        assert {"cv", "repeats", "seed", "sort", "battery", "split", "n_jobs", "timeout"} <= set(options)
    assert {"features", "chunk_size", "layout", "precision", "weights", "device"} <= set(options)


@pytest.mark.parametrize("command, option, choices", [
    ("extract", "--layout", LAYOUTS),
    ("extract", "--precision", PRECISIONS),
    ("compare", "--battery", BATTERIES),
    ("compare", "--split", SCHEMES),
])
def test_choices_are_the_library_constants(capsys, command, option, choices):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, option, "no-such-choice"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    offered = err.split("choose from", 1)[1].strip().rstrip(")")
    assert [c.strip(" '\"") for c in offered.split(",")] == list(choices)


def test_a_reader_that_leaves_the_pipe_is_no_bug(tmp_path, capsys, extract_raises):
    extract_raises(BrokenPipeError(32, "Broken pipe"))
    code, _, err = run(extract_argv(tmp_path), capsys)
    assert code == 141 and "bug" not in err and "Traceback" not in err


# ---------------------------------------------------------------------------
# extract, run for real (``chanstats``: the light extractor of tests/conftest.py)
# ---------------------------------------------------------------------------


def test_extract_of_nothing_readable_exits_1_with_the_summary(tmp_path, capsys):
    d = tmp_path / "d"
    for cls in ("all", "hem"):
        (d / cls).mkdir(parents=True)
        (d / cls / f"UID_1_1_1_{cls}.bmp").write_bytes(b"garbage")
    assert cli.main(["extract", str(d), "--features", "chanstats", "--cache-dir", str(tmp_path / "c"), "-q"]) == 1
    out, err = capsys.readouterr()
    # the summary still says what was found and why nothing was usable
    assert "images found 2, extracted 0, from cache 0, skipped 2" in out
    assert "skipped 2: not a recognised image format" in out
    assert err.startswith("leukbench: error:") and "no image could be read" in err and "Traceback" not in err


def test_cli_extract_summary(cnmc_folders, tmp_path, capsys):
    code = cli.main(["extract", str(cnmc_folders), "--features", "chanstats",
                     "--cache-dir", str(tmp_path / "c"), "-q", "--num-workers", "0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "images found 18, extracted 18, from cache 0, skipped 0" in out
    assert "features cached in" in out


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    code = cli.main(["extract", str(tmp_path / "missing"), "--cache-dir", str(tmp_path / "c"), "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("leukbench: error:") and "no such folder" in err
    assert "Traceback" not in err


def test_cli_precision_checked_before_work(tmp_path, capsys):
    code = cli.main(["extract", "--precision", "float16", "--device", "cpu",
                     "--cache-dir", str(tmp_path / "c"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("leukbench: error:") and "--precision bfloat16" in err
    assert "Traceback" not in err and not (tmp_path / "c").exists()


# ---------------------------------------------------------------------------
# compare: options checked before any work, the same folds as the library
# ---------------------------------------------------------------------------


def test_compare_says_when_a_whole_class_was_unreadable(cnmc_folders, tmp_path, capsys):
    for f in (cnmc_folders / "hem").iterdir():
        f.write_bytes(b"not an image")
    code = cli.main(["compare", str(cnmc_folders), "--features", "chanstats", "--cache-dir", str(tmp_path / "c"),
                     "-q", "--out", str(tmp_path / "r")])
    out, err = capsys.readouterr()
    assert code == 2 and "no image of class hem could be read for chanstats" in err
    assert "skipped 9: not a recognised image format" in out  # the summary said why, above the error


def test_cli_checks_compare_options_before_extracting(tmp_path, capsys, monkeypatch):
    for argv, message in (
        (["--sort", "Speed"], "cannot sort by 'Speed'"),
        (["--cv", "1"], "cv must be at least 2"),
        (["--repeats", "0"], "repeats must be at least 1"),
        (["--timeout", "-1"], "timeout must be a positive"),
    ):
        code = cli.main(["compare", str(tmp_path / "nowhere"), "--cache-dir", str(tmp_path / "c"), "-q", *argv])
        out, err = capsys.readouterr()
        assert code == 2 and message in err and "Traceback" not in err
        assert "images found" not in out  # nothing was extracted first
    (tmp_path / "a-file").write_text("x")
    sample = str(load_sample().attrs["root"])
    for argv, message in (  # the data exists; still nothing may be extracted before the error
        (["--classifiers", ""], "--classifiers is empty"),
        (["--classifiers", "-,"], "--classifiers is empty"),
        (["--out", str(tmp_path / "a-file")], "a-file: exists and is not a folder"),
        (["--out", str(tmp_path / "a-file" / "x")], "cannot write a folder here"),
        (["--split", "predefined"], "found 159 train, 0 test"),
        (["--n-jobs", "0"], "0 is not a number of jobs"),
        (["--batch-size", "0"], "must be at least 1"),
        (["--chunk-size", "-1"], "must be at least 1"),
        (["--num-workers", "-1"], "must be at least 0"),
        (["--positive-label", "ALL"], "--positive-label 'ALL' is not a class of"),
    ):
        try:
            code = cli.main(["compare", sample, "--features", "handcrafted", "--cache-dir", str(tmp_path / "c"),
                             "-q", *argv])
        except SystemExit as exc:  # argparse's own usage error
            code = exc.code
        out, err = capsys.readouterr()
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)
        assert "images found" not in out and not (tmp_path / "c").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # the --out probes left nothing
    monkeypatch.setitem(sys.modules, "lazypredict", None)  # not installed
    code = cli.main(["compare", str(tmp_path / "nowhere"), "--battery", "all", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "needs lazypredict" in err and "Traceback" not in err


def test_cli_exclude_syntax_of_classifiers(monkeypatch):
    """`--classifiers -A,-B` (the documented exclude form) is a value, not an unknown option."""
    from leukbench.classifiers import DEFAULT_BATTERY, select_classifiers

    parsed = []  # the options main() hands to the compare command, which does nothing here
    monkeypatch.setattr(cli, "cmd_compare", lambda args: parsed.append(args) or 0)
    for argv in (["compare", "--classifiers", "-GaussianNB,-SVC", "-q"],
                 ["compare", "--classifiers=-GaussianNB,-SVC", "-q"]):
        cli.main(argv)
        args = parsed[-1]
        assert args.classifiers == "-GaussianNB,-SVC" and args.quiet
        assert select_classifiers(args.classifiers) == [c for c in DEFAULT_BATTERY if c not in ("GaussianNB", "SVC")]
    cli.main(["compare", "--classifiers", "SVC", "-q"])
    args = parsed[-1]
    assert args.classifiers == "SVC" and args.quiet


def test_library_seed_default_is_the_command_lines():
    from leukbench import compare, schema
    from leukbench.evaluation import plan_splits

    assert inspect.signature(compare).parameters["seed"].default == schema.DEFAULT_SEED == 42
    assert inspect.signature(plan_splits).parameters["seed"].default == schema.DEFAULT_SEED
    assert cli.build_parser().parse_args(["compare"]).seed == schema.DEFAULT_SEED


@pytest.mark.slow
def test_library_and_command_line_give_the_same_folds(tmp_path, capsys):
    """`leukbench.compare(fs)` in a notebook and `leukbench compare` on the same data split alike."""
    cache = tmp_path / "cache"
    fs = leukbench.extract(features="handcrafted", cache_dir=cache, progress=False)
    lib = leukbench.compare(fs, classifiers="LinearDiscriminantAnalysis", cache_dir=False, progress=False)
    out = tmp_path / "out"
    assert cli.main(["compare", "--features", "handcrafted", "--classifiers", "LinearDiscriminantAnalysis",
                     "--cache-dir", str(cache), "-q", "--out", str(out)]) == 0
    capsys.readouterr()
    cols = ["repeat", "fold", "id", "y_true", "y_pred"]

    def assignment(preds):
        return preds[cols].astype(str).sort_values(cols).reset_index(drop=True)

    pd.testing.assert_frame_equal(assignment(lib.predictions), assignment(pd.read_csv(out / "predictions.csv")))
    assert lib.params["seed"] == json.loads((out / "run.json").read_text())["params"]["seed"] == 42
    assert lib.cv_description.split(":")[0] == "StratifiedGroupKFold(5) (seed 42)"
    old = leukbench.compare(fs, classifiers="LinearDiscriminantAnalysis", seed=0, cache_dir=False,
                            progress=False)
    assert not assignment(old.predictions)[["fold", "id"]].equals(assignment(lib.predictions)[["fold", "id"]])
