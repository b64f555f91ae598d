"""The ``dsco`` command line: ``dsco run`` (papermill batches) and ``dsco book`` (Jupyter Book).

Examples::

    dsco run --dataset digits --profile smoke            # every notebook, cached
    dsco run --only 10 11 --force                        # two notebooks, re-executed
    dsco run --dataset imagenette -p root /data/imagenette -p backbone_path ./DiT-XL-2-256
    dsco book --dataset digits --profile smoke           # render build/runs/digits/smoke

Bad input exits with status 2 and one line naming the fix; a failing notebook exits with status 1.
"""
from __future__ import annotations

import argparse
import sys

import yaml

from . import DATASETS, PROFILES


def _value(text: str):
    """Parse a ``-p`` value like papermill does: numbers, booleans, null, else the string."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool, type(None))) else text


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits", help=f"one of {', '.join(DATASETS)} (default digits)")
    p.add_argument("--profile", default="smoke", help=f"one of {', '.join(PROFILES)} (default smoke)")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dsco", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="execute the numbered notebooks with papermill")
    _common(r)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    r.add_argument("--only", nargs="+", metavar="NB", help="notebook stems or numbers to run")
    r.add_argument("--force", action="store_true", help="re-execute even when the cache matches")
    r.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="extra parameter passed to every notebook (repeatable)")

    b = sub.add_parser("book", help="render the executed notebooks with Jupyter Book")
    _common(b)
    return ap


def main(argv=None) -> int:
    from .book import BookError
    from .runner import NotebookFailed, RunError

    args = parser().parse_args(argv)
    try:
        if args.command == "run":
            from .runner import run

            extra = {k: _value(v) for k, v in args.parameter}
            clash = {"dataset", "profile", "seed", "device"} & extra.keys()
            if clash:
                raise RunError(f"pass {', '.join(sorted(clash))} with --{sorted(clash)[0]}, not -p")
            results = run(args.dataset, args.profile, args.seed, args.device, only=args.only,
                          force=args.force, extra=extra)
            done = sum(r.status == "executed" for r in results)
            print(f"dsco run: {done} executed, {len(results) - done} skipped (cached) -> "
                  f"{results[0].output.parent}")
        elif args.command == "book":
            from .book import build

            print(f"dsco book: building the site from build/runs/{args.dataset}/{args.profile} ...")
            index = build(dataset=args.dataset, profile=args.profile)
            print(f"dsco book: open {index}")
    except (RunError, ValueError, FileNotFoundError) as err:
        print(f"dsco: error: {err}", file=sys.stderr)
        return 2
    except (NotebookFailed, BookError) as err:
        print(f"dsco: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
