"""The ``dsco`` command line: ``dsco run`` (papermill batches), ``dsco book`` (Jupyter Book),
``dsco bench`` (cost of vanilla sampling vs NOpt, :mod:`dsco.bench`), ``dsco concentrate`` (a
concentrated dataset on disk, sharded under torchrun, :mod:`dsco.concentrate`) and ``dsco fixtures``
(an offline stand-in for the full-scale path, :mod:`dsco.fixtures`).

Examples::

    dsco run --dataset digits --profile smoke            # every notebook, cached
    dsco run --only 10 11 --force                        # two notebooks, re-executed
    dsco run --profile paper --jobs 2                    # two kernels at a time (2 cores)
    dsco run --dataset imagenette -p root /data/imagenette -p backbone_path ./DiT-XL-2-256
    dsco fixtures --out /tmp/fx                          # a tiny offline stand-in for the line
    above dsco concentrate --method dsco --ipc 10 --out sets/digits-dsco10         # a concentrated
    set on disk torchrun --nproc_per_node 4 -m dsco concentrate --dataset imagenet1k --ipc 10
    --device cuda --out … -p … dsco book --dataset digits --profile smoke           # render
    build/runs/digits/smoke dsco bench --classes 10 --ipc 10 --out build/bench.json   # digits,
    paper settings, CPU dsco bench --dataset imagenette -p root /data/imagenette -p backbone_path
    ./DiT-XL-2-256 --device cuda dsco bench --backbone dit-xl-2-256 --random-weights --device cuda
    --backbone-dtype bf16

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
    if isinstance(
        value, str
    ):  # YAML 1.1 reads 1e12 (no dot) as a string; Python reads it as a number
        try:
            return float(value)
        except ValueError:
            return text
    return value if isinstance(value, (int, float, bool, type(None))) else text


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", default="digits", help=f"one of {', '.join(DATASETS)} (default digits)"
    )
    p.add_argument(
        "--profile", default="smoke", help=f"one of {', '.join(PROFILES)} (default smoke)"
    )


def _parameters(p: argparse.ArgumentParser, what: str) -> None:
    """The repeatable ``-p KEY VALUE`` option (values read by :func:`_value`)."""
    p.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("KEY", "VALUE"),
        help=what,
    )


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dsco", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="execute the numbered notebooks with papermill")
    _common(r)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    r.add_argument("--only", nargs="+", metavar="NB", help="notebook stems or numbers to run")
    r.add_argument("--force", action="store_true", help="re-execute even when the cache matches")
    r.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="notebooks executed at once after the 0x setup notebooks (default 1)",
    )
    _parameters(r, "extra parameter passed to every notebook (repeatable)")
    r.add_argument(
        "--trace",
        default=None,
        metavar="FILE",
        help="write the batch's trace (notebooks, core load, trainings, sets) to FILE (JSON)",
    )

    b = sub.add_parser("book", help="render the executed notebooks with Jupyter Book")
    b.add_argument(
        "--dataset", default="digits", help=f"one of {', '.join(DATASETS)} (default digits)"
    )
    b.add_argument(
        "--profile",
        default=None,
        help=f"one of {', '.join(PROFILES)} (default smoke; paper with --reference)",
    )
    b.add_argument(
        "--partial",
        action="store_true",
        help="build from the notebooks that were executed (e.g. a paper batch run with --only)",
    )
    b.add_argument(
        "--reference",
        action="store_true",
        help="render the reference runs shipped in reference/ (every dataset; nothing executes)",
    )

    s = sub.add_parser("reference", help="ship a finished batch as the reference run (reference/)")
    s.add_argument("action", choices=["ship"], help="ship: copy build/runs and build/results in")
    _common(s)
    s.add_argument(
        "--trace", default=None, metavar="FILE", help="the batch's trace (dsco run --trace)"
    )
    s.add_argument(
        "--results-only",
        action="store_true",
        help="ship the results and the run record, not the executed notebooks (smoke)",
    )

    v = sub.add_parser(
        "verify",
        help="re-execute notebooks from scratch and compare every claim with the "
        "shipped reference run (exit 1 when a decided verdict flips)",
    )
    v.add_argument(
        "--dataset", default="digits", help=f"one of {', '.join(DATASETS)} (default digits)"
    )
    v.add_argument(
        "--profile", default="paper", help=f"one of {', '.join(PROFILES)} (default paper)"
    )
    v.add_argument(
        "--only", nargs="+", required=True, metavar="NB", help="notebook stems or numbers"
    )
    v.add_argument("--jobs", type=int, default=1, help="notebooks executed at once (default 1)")
    v.add_argument(
        "--scratch", default=None, help="the scratch folder (default: a new temporary one)"
    )
    _parameters(v, "a notebook parameter, as for dsco run (repeatable)")

    k = sub.add_parser(
        "concentrate",
        help="make a concentrated dataset on disk (ImageFolder + manifest); "
        "torchrun -m dsco concentrate … shards the classes",
    )
    k.add_argument(
        "--dataset", default="digits", help=f"one of {', '.join(DATASETS)} (default digits)"
    )
    k.add_argument("--method", default="dsco", help="dsco (default), dfdsco, vanilla or random")
    k.add_argument("--ipc", type=int, required=True, help="synthetic images per class")
    k.add_argument(
        "--dope-to",
        type=int,
        default=None,
        metavar="IPC",
        help="dope every class up to this IPC with the most confusing real images (§4.2)",
    )
    k.add_argument(
        "--global-selection",
        action="store_true",
        help="with --dope-to: rank the real images over all classes (the official code) instead "
        "of per class",
    )
    k.add_argument(
        "--classes", type=int, nargs="+", default=None, metavar="LABEL", help="labels (default all)"
    )
    k.add_argument(
        "--out",
        required=True,
        help="the export folder (new, or a run of the same arguments to resume)",
    )
    k.add_argument(
        "--profile",
        default="paper",
        help="the budget whose NOpt options are the base (default paper)",
    )
    k.add_argument(
        "-o",
        "--option",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a NOpt option over the profile's, e.g. -o iterations 200 (repeatable)",
    )
    _parameters(k, "a dataset parameter, as for dsco run (repeatable)")
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--device", default="cpu", help="cpu or cuda (under torchrun: one GPU per rank)")
    k.add_argument("--threads", type=int, default=None, help="torch threads per process")

    f = sub.add_parser(
        "fixtures",
        help="make a small ImageNet-layout tree and tiny random checkpoints to try "
        "the full-scale path offline",
    )
    f.add_argument(
        "--dataset", default="imagenette", help="imagenette (default), imagewoof or folder"
    )
    f.add_argument("--out", required=True, help="an empty or new folder")
    f.add_argument("--seed", type=int, default=0)

    phases = [
        "vanilla",
        "vanilla_batched",
        "accessible",
        "free",
    ]  # dsco.bench.PHASES (not imported: keeps startup light)
    c = sub.add_parser("bench", help="time vanilla sampling against NOpt (JSON + table)")
    c.add_argument(
        "--dataset",
        default=None,
        help="bench a registry dataset's own backbone on its real latents "
        "(with -p root/backbone_path/...)",
    )
    _parameters(c, "a dataset parameter for --dataset (repeatable)")
    c.add_argument(
        "--backbone", default="digits-ddpm", help="digits-ddpm (default) or dit-xl-2-256"
    )
    c.add_argument(
        "--path",
        default=None,
        help="checkpoint folder / hub id (dit-xl-2-256 without --random-weights)",
    )
    c.add_argument(
        "--random-weights", action="store_true", help="real-size model with random weights"
    )
    c.add_argument(
        "--tiny", action="store_true", help="with --random-weights: the tiny test configuration"
    )
    c.add_argument(
        "--classes", type=int, default=10, help="number of classes (the first N; default 10)"
    )
    c.add_argument("--ipc", type=int, default=10)
    c.add_argument("--iterations", type=int, default=200)
    c.add_argument("--steps", type=int, default=50)
    c.add_argument("--guidance", type=float, default=4.0)
    c.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    c.add_argument("--phases", nargs="+", default=phases, choices=phases)
    c.add_argument("--engine", default="batched", choices=["batched", "reference"])
    c.add_argument(
        "--compile",
        nargs="?",
        const=True,
        default=False,
        metavar="MODE",
        help="torch.compile the NOpt inner loop (optionally an inductor mode, e.g. "
        "reduce-overhead)",
    )
    c.add_argument("--backbone-dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    c.add_argument(
        "--n-real",
        type=int,
        default=None,
        help="real latents per class (accessible mode; default: the class size)",
    )
    c.add_argument("--n-templates", type=int, default=200, help="templates per class (free mode)")
    c.add_argument("--threads", type=int, default=None, help="torch threads for the run")
    c.add_argument(
        "--peak-tflops", type=float, default=None, help="device peak for the FLOP/s ratio"
    )
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", default=None, help="write the JSON report here")
    return ap


def main(argv=None) -> int:
    from .errors import BookError
    from .runner import NotebookFailed, RunError

    args = parser().parse_args(argv)
    try:
        if args.command == "run":
            from .runner import run

            extra = {k: _value(v) for k, v in args.parameter}
            clash = {"dataset", "profile", "seed", "device"} & extra.keys()
            if clash:
                raise RunError(f"pass {', '.join(sorted(clash))} with --{sorted(clash)[0]}, not -p")
            results = run(
                args.dataset,
                args.profile,
                args.seed,
                args.device,
                only=args.only,
                force=args.force,
                extra=extra,
                jobs=args.jobs,
                trace=args.trace,
            )
            done = sum(r.status == "executed" for r in results)
            print(
                f"dsco run: {done} executed, {len(results) - done} skipped (cached) -> "
                f"{results[0].output.parent}"
            )
        elif args.command == "book":
            from .book import build, build_reference

            if args.reference:
                profile = args.profile or "paper"
                print(
                    f"dsco book: rendering the shipped {profile} reference runs "
                    "(nothing executes) ..."
                )
                for name, index in build_reference(profile).items():
                    print(f"dsco book: {name}: open {index}")
            else:
                profile = args.profile or "smoke"
                print(f"dsco book: building the site from build/runs/{args.dataset}/{profile} ...")
                index = build(dataset=args.dataset, profile=profile, partial=args.partial)
                print(f"dsco book: open {index}")
        elif args.command == "reference":
            from .reference import ship

            folder = ship(
                args.dataset, args.profile, trace=args.trace, notebooks=not args.results_only
            )
            print(f"dsco reference: shipped {args.dataset}/{args.profile} -> {folder}")
        elif args.command == "verify":
            return verify(args)
        elif args.command == "concentrate":
            from . import concentrate

            concentrate.run(
                args.dataset,
                args.method,
                args.ipc,
                args.out,
                dope_to=args.dope_to,
                per_class=not args.global_selection,
                classes=args.classes,
                params={k: _value(v) for k, v in args.parameter},
                profile=args.profile,
                options={k: _value(v) for k, v in args.option},
                seed=args.seed,
                device=args.device,
                threads=args.threads,
            )
        elif args.command == "fixtures":
            from pathlib import Path

            from . import fixtures

            out = Path(args.out)
            if args.dataset not in ("imagenette", "imagewoof", "folder"):
                raise ValueError(f"--dataset {args.dataset}: use imagenette, imagewoof or folder")
            if out.exists() and any(out.iterdir()):
                raise ValueError(f"{out} is not empty: choose a new folder")
            params = (
                {"root": str(fixtures.folder_tree(out, seed=args.seed))}
                if args.dataset == "folder"
                else fixtures.make(out, args.dataset, seed=args.seed)
            )
            print(
                f"dsco fixtures: wrote {out}; run the batch with\n  "
                f"{fixtures.command(args.dataset, params)}"
            )
        elif args.command == "bench":
            from . import bench, digits_ddpm, dit

            if args.tiny and not args.random_weights:
                raise ValueError("--tiny needs --random-weights")
            tiny = {
                "digits-ddpm": (digits_ddpm.TINY_UNET, None),
                "dit-xl-2-256": (dit.TINY_DIT, dit.TINY_VAE),
            }.get(args.backbone, (None, None))
            dataset, backbone = None, args.backbone
            if args.dataset:
                from . import datasets

                if args.random_weights:
                    raise ValueError(
                        "--dataset benches the dataset's own backbone: drop --random-weights"
                    )
                dataset = datasets.get(
                    args.dataset, "paper", **{k: _value(v) for k, v in args.parameter}
                ).check()
                backbone = dataset.backbone(args.device)
            elif args.parameter:
                raise ValueError("-p gives dataset parameters: add --dataset")
            bench.run(
                backbone,
                args.classes,
                args.ipc,
                args.iterations,
                args.steps,
                args.guidance,
                args.device,
                phases=args.phases,
                engine=args.engine,
                compile=args.compile,
                backbone_dtype=args.backbone_dtype,
                random_weights=args.random_weights,
                config=tiny[0] if args.tiny else None,
                vae_config=tiny[1] if args.tiny else None,
                path=args.path,
                n_real=args.n_real,
                n_templates=args.n_templates,
                seed=args.seed,
                threads=args.threads,
                peak=args.peak_tflops,
                dataset=dataset,
                out=args.out,
                verbose=True,
            )
    except KeyboardInterrupt as err:  # Ctrl-C: one line, not a traceback
        print(
            f"dsco: {str(err) or 'interrupted'}; rerun the same command to resume", file=sys.stderr
        )
        return 130
    except FloatingPointError as err:  # a diverging noise optimisation (dsco.nopt.NOptDiverged)
        print(f"dsco: error: {err}", file=sys.stderr)
        return 1
    except (RunError, ValueError, FileNotFoundError) as err:
        print(f"dsco: error: {err}", file=sys.stderr)
        return 2
    except (NotebookFailed, BookError) as err:
        print(f"dsco: {err}", file=sys.stderr)
        return 1
    return 0


def verify(args) -> int:
    """``dsco verify``: re-execute ``--only`` into a scratch folder with caches of its own (every
    set and training computed again), print every claim against the shipped reference run and the
    numbers that moved beyond rounding (expected on another CPU), and return 1 when a verdict the
    reference decided flips, else 0."""
    import os
    import tempfile
    from pathlib import Path

    import pandas as pd

    from . import reference, runner, scorecard

    ref = reference.collect(args.dataset, args.profile)
    if ref.empty:
        raise ValueError(
            f"no reference run of {args.dataset}/{args.profile} is shipped: ship one "
            f"with `dsco reference ship --dataset {args.dataset} --profile {args.profile}`"
        )
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="dsco-verify-"))
    env = {"DSCO_RESULTS": str(scratch / "results"), "DSCO_CACHE": str(scratch / "cache")}
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernels inherit both: results and caches of their own
    try:
        done = runner.run(
            args.dataset,
            args.profile,
            only=args.only,
            force=True,
            jobs=args.jobs,
            extra={k: _value(v) for k, v in args.parameter},
            runs_dir=scratch / "runs",
        )
    finally:
        for k, v in before.items():
            os.environ.pop(k, None) if v is None else os.environ.update({k: v})
    ours = scorecard.collect(
        args.profile, [args.dataset], [r.notebook for r in done], base=scratch / "results"
    )
    table = reference.compare(ours, ref)
    with pd.option_context("display.max_colwidth", 90, "display.width", 200):
        print(
            table[["notebook", "claim", "reference", "verdict", "status", "why"]].to_string(
                index=False
            )
        )
    moved = reference.compare_numbers(
        scratch / "results" / args.dataset / args.profile,
        reference.REFERENCE / "results" / args.dataset / args.profile,
        notebooks={r.notebook for r in done},
    )
    if len(moved):
        print(f"numbers that moved against the reference (first 20 of {len(moved)}):")
        print(moved.head(20).to_string(index=False))
    flipped = int(table["flipped"].sum())
    counts = table["status"].value_counts()
    print(
        f"dsco verify: {', '.join(f'{counts.get(s, 0)} {s}' for s in reference.STATUS)}; "
        f"{flipped} decided verdict(s) flipped; {len(moved)} number(s) moved beyond rounding "
        f"({scratch})"
    )
    return 1 if flipped else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
