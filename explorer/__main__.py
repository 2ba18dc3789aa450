"""Command line: ``python -m explorer {info,export,analyze,reproduce,train-mini-mae}``."""

from __future__ import annotations

import argparse
import sys


def _info(_args) -> int:
    import torch
    import transformers

    import explorer
    from explorer.models import available_devices, shipped_models

    print(f"explorer {explorer.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
    print("devices:", ", ".join(available_devices()))
    for name, path in shipped_models().items():
        print(f"shipped model {name}: {path}")
    return 0


def _export(args) -> int:
    from explorer.export.batch import BatchConfig, run_batch

    cfg = BatchConfig(
        model=args.model, inputs=args.inputs, out=args.out, ratios=tuple(args.ratios), views=tuple(args.views),
        seed=args.seed, strategy=args.strategy, fit=args.fit, formats=tuple(args.formats), preset=args.preset,
        rows=args.rows, dpi=args.dpi, device=args.device, dtype=args.dtype, batch_size=args.batch_size, overwrite=args.overwrite,
        recursive=args.recursive, **({"workers": args.workers} if args.workers else {}),
    )
    summary = run_batch(cfg, progress=not args.quiet)
    print(summary.text())
    print(f"Summary written to {cfg.out}/summary.json")
    return 1 if summary.failed else 0


def _analyze(args) -> int:
    from explorer.analyze import AnalyzeError, run

    options = {}
    if args.ratios:
        options["ratios"] = args.ratios
    if args.strategies:
        options["strategies"] = args.strategies
    if args.methods:
        options["methods"] = args.methods
    if args.seed is not None:
        options["seed"] = args.seed
    try:
        summary = run(args.inputs, args.model, args.analysis, args.out, options=options, workers=args.workers,
                      address=args.address, in_process=args.in_process, resume=not args.no_resume,
                      overwrite=args.overwrite, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
                      progress=not args.quiet)
    except AnalyzeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if summary.errors else 0


def _rows(text: str) -> "int | str":
    """``--rows``: ``auto`` or a whole number of rows, at least 1."""
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a whole number of rows (1, 2, …), got {text!r}")
    return n


def _reproduce(args) -> int:
    from explorer.export import reproduce

    try:
        report = reproduce(args.sidecar, out=args.out, inputs=args.input, device=args.device,
                           check_weights=not args.skip_weight_check, overwrite=args.overwrite,
                           allow_download=args.allow_download, model=args.model, input_dirs=args.input_dir or ())
    except OSError as e:  # a file that cannot be read or written: said, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0 if report.equivalent else 3


def _parser() -> argparse.ArgumentParser:
    from explorer.export.batch import VIEWS
    from explorer.viz.presets import PRESETS

    ap = argparse.ArgumentParser(prog="python -m explorer", description="explorer command line")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="versions, devices and shipped models").set_defaults(fn=_info)

    ex = sub.add_parser("export", help="export reconstructions for every image in a folder",
                        description="Batch export: decode, reconstruct at every ratio (batched on the GPU), write "
                                    "tiles and/or paper figures with sidecars. Reruns skip finished inputs.")
    ex.add_argument("--model", required=True, help="shipped name (mini-mae), hub id or folder")
    ex.add_argument("--inputs", required=True, help="folder of images")
    ex.add_argument("--out", required=True, help="output folder (one run at a time writes into it; a second one stops "
                                                 "with an error, exit code 2)")
    ex.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.75, 0.9])
    ex.add_argument("--views", nargs="+", choices=VIEWS, default=["tiles"])
    ex.add_argument("--formats", nargs="+", choices=["pdf", "svg", "png"], default=["pdf", "svg", "png"],
                    help="formats of the figure views")
    ex.add_argument("--preset", choices=sorted(PRESETS), default="double-column")
    ex.add_argument("--rows", type=_rows, default="auto",
                    help="panel rows of the exported figures: 'auto' (one row when legible at the preset's "
                         "width, else more) or a number (a warning in the figure's notes when it cannot be legible)")
    ex.add_argument("--dpi", type=int, default=None)
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--strategy", choices=["random", "block", "grid"], default="random")
    ex.add_argument("--fit", choices=["center-crop", "resize", "pad"], default="center-crop")
    ex.add_argument("--device", default="auto")
    ex.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    ex.add_argument("--batch-size", type=int, default=16, help="images per forward (each with every ratio)")
    ex.add_argument("--workers", type=int, default=None, help="decode / write threads (default: cores, at most 8)")
    ex.add_argument("--recursive", action="store_true", help="also images in sub-folders (never those of an export's "
                                                              "output folder)")
    ex.add_argument("--overwrite", action="store_true",
                    help="replace outputs made with other settings or of another file (their files the new settings "
                         "do not write are removed)")
    ex.add_argument("--quiet", action="store_true", help="no progress bar")
    ex.set_defaults(fn=_export)

    an = sub.add_parser("analyze", help="one row per input x setting of an analysis over a dataset, to Parquet",
                        description="Dataset-scale analysis on Ray Data (decode in CPU tasks, the model in an actor "
                                    "pool, metrics in CPU tasks); a rerun skips inputs already written. Exit code 1 "
                                    "when some inputs failed (their rows carry the error), 2 for bad arguments.")
    an.add_argument("inputs", help="a folder (recursive; ImageFolder layout gives a label), a glob, a .txt list of "
                                   "paths or a .parquet with a 'path' column")
    an.add_argument("--model", required=True, help="shipped name (mini-mae), hub id or folder")
    an.add_argument("--analysis", required=True, choices=["mae-sweep", "heads", "faithfulness"])
    an.add_argument("--out", required=True, help="the .parquet file to write (settings and versions in its metadata)")
    an.add_argument("--workers", type=int, default=None, help="model actors / local Ray CPUs (default: cores)")
    an.add_argument("--address", default=None, help="join this Ray cluster (e.g. auto, ray://head:10001)")
    an.add_argument("--in-process", action="store_true", help="run the same stages without Ray (same rows)")
    an.add_argument("--ratios", type=float, nargs="+", default=None, help="mae-sweep: masking ratios")
    an.add_argument("--strategies", nargs="+", choices=["random", "block", "grid"], default=None,
                    help="mae-sweep: masking strategies")
    an.add_argument("--methods", nargs="+", default=None, help="faithfulness: explanation methods")
    an.add_argument("--seed", type=int, default=None)
    an.add_argument("--batch-size", type=int, default=4, help="inputs per block")
    an.add_argument("--device", default="auto")
    an.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    an.add_argument("--no-resume", action="store_true", help="do not reuse rows already in --out (needs --overwrite)")
    an.add_argument("--overwrite", action="store_true", help="replace an --out written with other settings")
    an.add_argument("--quiet", action="store_true", help="no progress bar")
    an.set_defaults(fn=_analyze)

    rp = sub.add_parser("reproduce", help="rebuild an exported figure from its sidecar and compare the bytes")
    rp.add_argument("sidecar", help="FIGURE.json (or an exported .png/.pdf/.svg with embedded sidecar)")
    rp.add_argument("--out", default=None, help="output stem (default: <figure>-reproduced)")
    rp.add_argument("--input", nargs="+", default=None, help="new locations of the recorded inputs, in order "
                    "(read where they are; the sidecar's own paths are read only inside its folder)")
    rp.add_argument("--input-dir", action="append", default=None, metavar="DIR",
                    help="a folder where the recorded inputs may also be read (by path or file name); repeatable")
    rp.add_argument("--model", default=None, help="use this model (shipped name, folder or hub id) instead of the "
                    "recorded one; its weights are still checked")
    rp.add_argument("--allow-download", action="store_true",
                    help="let a Hugging Face id named in the sidecar be downloaded (default: shipped models, folders "
                         "inside the sidecar's folder and the local Hugging Face cache only)")
    rp.add_argument("--device", default=None)
    rp.add_argument("--skip-weight-check", action="store_true")
    rp.add_argument("--overwrite", action="store_true")
    rp.set_defaults(fn=_reproduce)

    tr = sub.add_parser("train-mini-mae", help="train the shipped mini MAE (see its model card)", add_help=False)
    tr.set_defaults(fn=None)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args, rest = ap.parse_known_args(argv)
    if args.cmd == "train-mini-mae":
        from explorer.training.train_mini_mae import main as train_main

        train_main(rest)
        return 0
    if rest:
        ap.error(f"unrecognised arguments: {' '.join(rest)}")
    from explorer.export import ExportError, ReproduceError, SidecarError
    from explorer.models import DeviceError, ModelLoadError

    try:
        return args.fn(args)
    except (ExportError, ReproduceError, SidecarError, ModelLoadError, DeviceError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
