"""The ``mhatheory`` command.

    mhatheory verify [--full] [--only NAME ...] [--out report]
    mhatheory run EXPERIMENT --out DIR [--full] [--resume] [--<config field> VALUE ...]
    mhatheory info

Experiment options are generated from each experiment's frozen ``Config`` dataclass, so every
field is a flag (``--heads 8``; tuples as comma lists, ``--heads-grid 1,2,4``).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import sys
import typing


def _parse_tuple(kind):
    def parse(text: str):
        return tuple(kind(x) for x in text.split(",") if x.strip())

    return parse


def _add_config_arguments(parser: argparse.ArgumentParser, config_cls) -> None:
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=f"(default: {default})")
        elif isinstance(default, tuple):
            args = typing.get_args(hints[f.name])
            kind = args[0] if args else str
            parser.add_argument(flag, type=_parse_tuple(kind), default=None,
                                help=f"comma-separated (default: {','.join(map(str, default))})")
        else:
            parser.add_argument(flag, type=type(default), default=None,
                                help=f"(default: {default})")


def _config_from_args(module, args):
    overrides = dict(getattr(module, "FULL", {})) if getattr(args, "full", False) else {}
    for f in dataclasses.fields(module.Config):
        value = getattr(args, f.name, None)
        if value is not None:
            overrides[f.name] = value
    return module.Config(**overrides)


def build_parser() -> argparse.ArgumentParser:
    from mhatheory import experiments, verify

    parser = argparse.ArgumentParser(
        prog="mhatheory",
        description="Check the theory of multi-head attention numerically: Hessian probes, "
                    "weak convexity, stability bounds, symmetry.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("verify", help="run every check at small size; PASS/FAIL table and report",
                       description="Run every verification check, print a PASS/FAIL table, and "
                                   "write report/index.html, index.md and results.json. Exit "
                                   "status 1 when a theorem or identity check fails.")
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
        e = exps.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0],
                            description=module.__doc__)
        e.add_argument("--out", required=True, help="output folder")
        e.add_argument("--full", action="store_true", help="the large (GPU-sized) configuration")
        e.add_argument("--resume", action="store_true",
                       help="skip sweep cells already finished in --out")
        e.add_argument("--no-progress", action="store_true", help="no progress bars")
        _add_config_arguments(e, module.Config)

    sub.add_parser("info", help="print versions and devices as JSON")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from mhatheory import results

    if args.command == "info":
        print(json.dumps({"versions": results.versions(), "device": results.device_info()},
                         indent=2))
        return 0
    if args.command == "run":
        from mhatheory import experiments

        module = experiments.load(args.experiment)
        try:
            config = _config_from_args(module, args)
        except ValueError as err:
            print(f"mhatheory run {args.experiment}: {err}", file=sys.stderr)
            return 2
        kwargs = {"progress": not args.no_progress}
        if "resume" in inspect.signature(module.run).parameters:
            kwargs["resume"] = args.resume
        summary = module.run(config, args.out, **kwargs)
        print(json.dumps(results.to_jsonable(summary), indent=2))
        print(f"wrote {args.out}/results.json")
        return 0

    from mhatheory import verify

    rows, timing = verify.run_checks(args.only, args.full, args.out,
                                     progress=not args.no_progress)
    print(verify.format_table(rows))
    page = verify.write_report(rows, timing, args.out, args.full)
    ok = verify.all_pass(rows)
    print(f"\n{'ALL CHECKS PASS' if ok else 'SOME CHECKS FAIL'}; report: {page} "
          f"({sum(timing.values()):.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
