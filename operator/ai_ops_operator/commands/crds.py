"""``ai-ops crds``: write the CRD YAML from the spec models, or check that it is current."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ai_ops_operator.core import crdgen


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", default="crds", type=Path, help="where the CRD files live")
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when a file is out of date")


def run(args: argparse.Namespace) -> int:
    if args.check:
        stale = crdgen.stale_crds(args.directory)
        for name in stale:
            print(f"{args.directory / name}: out of date; run 'make crds'", file=sys.stderr)
        return 1 if stale else 0
    for path in crdgen.write_crds(args.directory):
        print(f"wrote {path}")
    return 0
