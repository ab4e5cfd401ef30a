"""The ``mhatheory`` command.

    mhatheory verify [--full] [--only NAME ...] [--out report]
    mhatheory run EXPERIMENT --out DIR [--full] [--resume] [--<config field> VALUE ...]
        [--coordinator HOST:PORT --num-processes N --process-id I]   (sweeps: several processes)
    mhatheory info

Experiment options are generated from each experiment's frozen ``Config`` dataclass, so every
field is a flag (``--heads 8``; tuples as comma lists, ``--heads-grid 1,2,4``) whose help text is
the field's line in the ``Attributes:`` section of the class docstring (Google style; inherited
fields from the base classes' docstrings). Errors name the flag as typed (``--heads``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import re
import sys
import typing
import warnings

from mhatheory import _numerics

_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")
_ABBREVIATIONS = ("e.g.", "i.e.", "al.", "cf.", "vs.", "etc.")


def _plain(doc: str | None) -> str:
    """A docstring as terminal text: dedented, Sphinx roles and backticks removed
    (``:class:`~a.B``` → ``B``)."""
    text = _ROLE.sub(lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2),
                     inspect.cleandoc(doc or ""))
    return text.replace("`", "")


def _first_sentence(text: str) -> str:
    """The first sentence of the first paragraph (lines joined), without a leading
    ``mhatheory run NAME:`` prefix."""
    para = " ".join(text.strip().split("\n\n")[0].split())
    para = re.sub(r"^mhatheory run [\w-]+:\s*", "", para)
    for m in re.finditer(r"[.!?](?=\s|$)", para):
        if not para[:m.end()].endswith(_ABBREVIATIONS):
            return para[:m.end()]
    return para


def _attributes(doc: str | None) -> dict[str, str]:
    """``{name: text}`` from the ``Attributes:`` section of a Google-style docstring; an entry
    is ``name: text`` with continuation lines indented further; a blank or less indented line
    ends the section."""
    out: dict[str, str] = {}
    lines = inspect.cleandoc(doc or "").splitlines()
    if "Attributes:" not in [x.strip() for x in lines]:
        return out
    start = [x.strip() for x in lines].index("Attributes:") + 1
    indent, name = None, None
    for line in lines[start:]:
        depth = len(line) - len(line.lstrip())
        if not line.strip() or (indent is not None and depth < indent):
            break
        entry = re.match(r"\s*(\w+)\s*:\s*(.*)$", line)
        if indent is None or (depth == indent and entry):
            if not entry:
                break
            indent, name = depth, entry.group(1)
            out[name] = entry.group(2).strip()
        else:
            out[name] += " " + line.strip()
    return out


def field_docs(config_cls) -> dict[str, str]:
    """Each dataclass field's documentation, from the ``Attributes:`` sections of the class and
    its bases (the most derived class wins), as plain text."""
    docs: dict[str, str] = {}
    for klass in reversed(config_cls.__mro__):
        docs.update(_attributes(klass.__dict__.get("__doc__")))
    return {k: _plain(v) for k, v in docs.items()}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_tuple(kind, flag: str, example: str):
    def parse(text: str):
        items = [x.strip() for x in text.split(",")]
        if not any(items):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list such as "
                                             f"{flag} {example}, got {text!r}")
        if not all(items):
            raise argparse.ArgumentTypeError(f"{text!r} has an empty entry; list the values "
                                             f"once each, such as {flag} {example}")
        try:
            return tuple(kind(x) for x in items)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__} values such as {flag} {example}, "
                f"got {text!r}") from None

    return parse


def _add_config_arguments(parser: argparse.ArgumentParser, config_cls) -> None:
    hints = typing.get_type_hints(config_cls)
    docs = field_docs(config_cls)
    for f in dataclasses.fields(config_cls):
        flag = _flag(f.name)
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        doc = docs.get(f.name, "").rstrip(".")
        help_text = f"{doc} (default: {shown})".strip().replace("%", "%%")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        elif isinstance(default, tuple):
            args = typing.get_args(hints[f.name])
            kind = args[0] if args else str
            parser.add_argument(flag, type=_parse_tuple(kind, flag, shown), default=None,
                                metavar=f"{kind.__name__.upper()},...",
                                help=f"{doc}; comma-separated (default: {shown})"
                                .replace("%", "%%"))
        else:
            parser.add_argument(flag, type=type(default), default=None, help=help_text)


def _flags_in(message: str, names) -> str:
    """``message`` with every config field name written as its flag (``d_model`` →
    ``--d-model``), leaving quoted text alone."""
    names = sorted(names, key=len, reverse=True)
    pattern = re.compile(r"'[^']*'|\"[^\"]*\"|(?<![\w-])(" + "|".join(map(re.escape, names))
                         + r")(?![\w-])")
    return pattern.sub(lambda m: _flag(m.group(1)) if m.group(1) else m.group(0), message)


def _config_from_args(module, args):
    overrides = dict(getattr(module, "FULL", {})) if getattr(args, "full", False) else {}
    for f in dataclasses.fields(module.Config):
        value = getattr(args, f.name, None)
        if value is not None:
            overrides[f.name] = value
    return module.Config(**overrides)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose sub-commands refuse flags they do not know with their own
    usage line (``mhatheory verify --bogus`` shows verify's usage, not the top level's)."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def build_parser() -> argparse.ArgumentParser:
    """The ``mhatheory`` argument parser: ``verify``, ``run EXPERIMENT`` and ``info``.

    Returns:
        The parser; each experiment's flags are generated from its ``Config`` fields.

    Example:
        >>> build_parser().parse_args(["verify", "--only", "attention"]).only
        ['attention']
    """
    from mhatheory import experiments, verify

    parser = _Parser(
        prog="mhatheory",
        description="Check the theory of multi-head attention numerically: Hessian probes, "
                    "weak convexity, stability bounds, symmetry.")
    parser.add_argument("--no-compilation-cache", action="store_true",
                        help="compile everything afresh: do not read or write the persistent "
                             "compilation cache (~/.cache/mhatheory/jax; the environment "
                             "variable MHATHEORY_COMPILATION_CACHE=0 turns it off as well)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("verify", help="run every check at small size; PASS/FAIL table and report",
                       description="Run every verification check, print a PASS/FAIL table, and "
                                   "write report/index.html, index.md and results.json. Exit "
                                   "status 0 when every gated check passes, 1 when a theorem or "
                                   "identity check fails, 3 when none fails but some could not "
                                   "decide (INCONCLUSIVE), 2 for bad input.")
    p.add_argument("--out", default="report", help="report folder (default: report)")
    p.add_argument("--full", action="store_true", help="large sizes (GPU-sized)")
    p.add_argument("--only", nargs="+", choices=list(verify.CHECKS), metavar="NAME",
                   help=f"run only these check groups: {', '.join(verify.CHECKS)}")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    run = sub.add_parser("run", help="run one experiment, writing DIR/results.json and figures",
                         description="Run one experiment.")
    exps = run.add_subparsers(dest="experiment", required=True)
    for name in experiments.EXPERIMENTS:
        module = experiments.load(name)
        doc = _plain(module.__doc__)
        e = exps.add_parser(name, help=_first_sentence(doc).replace("%", "%%"), description=doc,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        e.add_argument("--out", required=True,
                       help="output folder (created if missing; must be writable)")
        e.add_argument("--full", action="store_true", help="the large (GPU-sized) configuration")
        sweep = "resume" in inspect.signature(module.run).parameters
        if sweep:
            e.add_argument("--resume", action="store_true",
                           help="reuse the sweep cells in --out whose recorded config matches "
                                "this run's; recompute the others (changed or corrupt)")
        e.add_argument("--no-progress", action="store_true", help="no progress bars")
        _add_config_arguments(e, module.Config)
        if sweep:
            _add_distributed_arguments(e)

    sub.add_parser("info", help="print versions and devices as JSON")
    return parser


def _add_distributed_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``jax.distributed`` flags of the sweep experiments (see :mod:`mhatheory.distributed`
    and the README's "Running at scale")."""
    from mhatheory import distributed

    docs = field_docs(distributed.Launch)
    g = parser.add_argument_group(
        "multi-process runs (jax.distributed)",
        "Start the same command once per process, all with the same flags except "
        "--process-id; the sweep cells are shared out among the processes and process 0 "
        "writes --out. Under srun/mpirun the values come from the environment.")
    g.add_argument("--coordinator", metavar="HOST:PORT", help=docs["coordinator"])
    g.add_argument("--num-processes", type=int, metavar="N", help=docs["num_processes"])
    g.add_argument("--process-id", type=int, metavar="I", help=docs["process_id"])
    g.add_argument("--distributed", action=argparse.BooleanOptionalAction, default=None,
                   help="start jax.distributed, taking what the three flags above leave out "
                        "from the cluster environment (SLURM, Open MPI, ...); default: on when "
                        "one of them is given or srun/mpirun started several tasks; "
                        "--no-distributed forces one process")
    g.add_argument("--connect-timeout", type=float, default=120.0, metavar="SECONDS",
                   help=docs["connect_timeout"].rstrip(".") + " (default: 120)")
    g.add_argument("--heartbeat-timeout", type=int, default=60, metavar="SECONDS",
                   help=docs["heartbeat_timeout"].rstrip(".") + " (default: 60)")


def launch_requested(args):
    """The :class:`~mhatheory.distributed.Launch` asked for by the flags (or the cluster
    environment), or ``None`` for a single-process run. Raises ``ValueError`` on bad values."""
    from mhatheory import distributed

    if not hasattr(args, "coordinator") or args.distributed is False:
        return None
    launch = distributed.Launch(args.coordinator, args.num_processes, args.process_id,
                                args.connect_timeout, args.heartbeat_timeout)
    if args.distributed or launch.given():
        return launch
    env = distributed.cluster_environment()
    if env is not None and env[1] > 1:
        print(f"mhatheory: {env[0]} started {env[1]} tasks: running them as one multi-process "
              "run (jax.distributed; --no-distributed to opt out).", file=sys.stderr)
        return launch
    return None


def _identity(name: str, config, args) -> dict:
    """What must be equal on every process of one run: the experiment, every config field (as
    its flag), --resume, float64 and the package versions."""
    import jax

    from mhatheory import results

    versions = results.versions()
    out = {"experiment": name, "--resume": bool(getattr(args, "resume", False)),
           "float64": bool(jax.config.jax_enable_x64)}
    out.update({_flag(f.name): results.to_jsonable(getattr(config, f.name))
                for f in dataclasses.fields(config)})
    out.update({f"{pkg} version": versions[pkg] for pkg in ("mhatheory", "jax", "jaxlib")})
    return out


def _check_out(out: str, experiment: str) -> None:
    """``--out`` names a writable folder (``results.check_out_dir``) that holds no other
    experiment's results (its figures would stay beside this one's results.json); an empty or
    blank value (an unset shell variable: ``--out "$DIR"``) would mean the current directory, so
    it is refused too."""
    from mhatheory import results

    if not out.strip():
        raise ValueError(f"--out {out!r} is empty; name a folder (e.g. --out results/run1).")
    folder = results.check_out_dir(out, "--out")
    try:
        previous = json.loads((folder / "results.json").read_text()).get("experiment")
    except (OSError, ValueError, AttributeError):
        previous = None
    if previous is not None and previous != experiment:
        raise ValueError(f"--out {out!r} holds the results of '{previous}' (results.json and its "
                         f"figures); name another folder for '{experiment}', or remove that "
                         "one first.")


#: The exit status after Ctrl-C (the shell's 128 + SIGINT).
INTERRUPTED = 130


@contextlib.contextmanager
def command_warnings():
    """The warnings of one command, as long as it runs: each category and text shown once, and
    as ``Category: text`` without a file and line. Python's own "once" registry is cleared
    whenever a filter changes, which every probe's ``catch_warnings`` does, so a model's
    ``PrecisionWarning`` would otherwise print at every probe of a sweep; and the file and line
    a warning names are the caller its ``stacklevel`` finds outside the toolkit, which in a
    command is the console script's own line. The previous hooks come back on exit."""
    shown, show, fmt = set(), warnings.showwarning, warnings.formatwarning

    def once(message, category, filename, lineno, file=None, line=None):
        if (category, str(message)) not in shown:
            shown.add((category, str(message)))
            show(message, category, filename, lineno, file, line)

    def plain(message, category, filename, lineno, line=None):
        return f"{category.__name__}: {message}\n"

    warnings.showwarning, warnings.formatwarning = once, plain
    try:
        yield
    finally:
        warnings.showwarning, warnings.formatwarning = show, fmt


def main(argv=None) -> int:
    """The ``mhatheory`` command.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 when ``verify`` finds a failing theorem or identity
        check, 3 when none fails but some check could not decide (INCONCLUSIVE), 2 for bad
        input (said on stderr, naming the flag, before any work), 130 (:data:`INTERRUPTED`)
        after Ctrl-C, saying how to continue.
    """
    args = build_parser().parse_args(_negative_values_attached(
        sys.argv[1:] if argv is None else list(argv)))
    with command_warnings():
        return _command(args)


#: a value that starts like a negative number, or a list of numbers led by one ("-1,1.0",
#: "-inf")
_NEGATIVE = re.compile(r"^-(\.?\d|inf|nan)", re.IGNORECASE)


def _negative_values_attached(argv: list[str]) -> list[str]:
    """``--flag -1,1.0`` as ``--flag=-1,1.0``: argparse takes a token that starts with "-" and
    is not a single number for an option and says only "expected one argument", where the
    flag's own check names what it accepts (no flag of this CLI starts with a digit)."""
    out: list[str] = []
    for token in argv:
        if (out and _NEGATIVE.match(token) and out[-1].startswith("--")
                and "=" not in out[-1]):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def _command(args) -> int:
    """:func:`main` after parsing: ``info``, ``run`` or ``verify``."""
    if args.no_compilation_cache:
        _numerics.disable_compilation_cache()
    from mhatheory import results

    if args.command == "info":
        print(json.dumps({"versions": results.versions(), "device": results.device_info()},
                         indent=2))
        return 0
    if args.command == "run":
        return _run(args)

    from mhatheory import verify

    try:
        _check_out(args.out, "verify")
    except ValueError as err:
        print(f"mhatheory verify: {err}", file=sys.stderr)
        return 2
    try:
        rows, timing = verify.run_checks(args.only, args.full, args.out,
                                         progress=not args.no_progress)
    except KeyboardInterrupt:
        print("\nmhatheory verify: interrupted; no report was written.", file=sys.stderr)
        return INTERRUPTED
    print(verify.format_table(rows))
    page = verify.write_report(rows, timing, args.out, args.full)
    print(f"\n{verify.summary_line(rows)}; report: {page} ({sum(timing.values()):.0f} s)")
    return verify.exit_status(rows)


def _run(args) -> int:
    """``mhatheory run``: flags → config → (jax.distributed) → ``--out`` → the experiment."""
    from mhatheory import distributed, experiments, results

    module = experiments.load(args.experiment)
    prog = f"mhatheory run {args.experiment}"
    names = [f.name for f in dataclasses.fields(module.Config)]
    launch_names = [f.name for f in dataclasses.fields(distributed.Launch)]
    try:
        config = _config_from_args(module, args)
        if hasattr(module, "prepare"):   # checks of the user's model and data, before any work
            module.prepare(config)
        launch = launch_requested(args)
    except ValueError as err:
        print(f"{prog}: {_flags_in(str(err), names + launch_names)} "
              f"(see {prog} --help)", file=sys.stderr)
        return 2
    if launch is not None:
        try:
            session = distributed.initialize(launch, _identity(args.experiment, config, args))
        except (distributed.DistributedError, ValueError) as err:
            print(f"{prog}: {_flags_in(str(err), launch_names)}", file=sys.stderr)
            return 2
        print(distributed.session_line(session), file=sys.stderr)
    try:
        if distributed.is_writer():
            _check_out(args.out, args.experiment)
    except ValueError as err:
        distributed.report_failure(str(err))
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    kwargs = {"progress": not args.no_progress}
    if hasattr(args, "resume"):
        kwargs["resume"] = args.resume
    try:
        summary = module.run(config, args.out, **kwargs)
    except distributed.DistributedError as err:
        # after a lost process (killed, out of memory) Python's exit does not run
        # jax.distributed's shutdown, whose barrier would wait for it and then abort with a C++
        # trace: mhatheory.distributed ends the process with status 1 at exit instead
        print(f"{prog}: {str(err).rstrip('.')}. The cells finished so far are in process 0's "
              "--out/cells; once the cause is fixed, the same command with --resume continues.",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        distributed.report_failure("interrupted (Ctrl-C)")
        again = ("the same command with --resume continues from the cells finished so far "
                 "(in --out/cells)" if hasattr(args, "resume") else "run the command again")
        print(f"\n{prog}: interrupted before writing --out/results.json; {again}.", file=sys.stderr)
        return INTERRUPTED
    except BaseException as err:
        distributed.report_failure(f"{type(err).__name__}: {err}")
        raise
    if distributed.is_writer():
        print(results.summary_table(summary))
        print(f"wrote {args.out}/results.json (every record, figures beside it)")
    else:
        print(f"process {distributed.process_index()}: done; process 0 wrote the results "
              "to the --out folder it was given", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
