"""Command line: ``python -m explorer {info,train-mini-mae}``."""

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m explorer", description="explorer command line")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="versions, devices and shipped models").set_defaults(fn=_info)
    tr = sub.add_parser("train-mini-mae", help="train the shipped mini MAE (see its model card)", add_help=False)
    tr.set_defaults(fn=None)
    args, rest = ap.parse_known_args(argv)
    if args.cmd == "train-mini-mae":
        from explorer.training.train_mini_mae import main as train_main

        train_main(rest)
        return 0
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
