"""`sde-data catalogue`: the project's tables and columns, inside a workspace."""

from __future__ import annotations

import argparse
import json
import os
import sys
from itertools import groupby
from pathlib import Path

from sde.data import DataError, catalogue


def print_catalogue(path: str | os.PathLike[str] | None, as_json: bool = False) -> None:
    """Print the catalogue of the data directory `path` (default $SDE_DATA_DIR or /data)."""
    rows = catalogue(path=path)
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    for (schema, table), group in groupby(rows, key=lambda r: (r["schema"], r["table"])):
        cols = list(group)
        print(f"{schema}.{table}: {cols[0]['table_description']}")
        width = max(len(c["column"]) for c in cols)
        for c in cols:
            print(f"  {c['column']:<{width}}  {c['type']:<8}  {c['description']}")
        print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sde-data", description="The project's data inside a workspace."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cat = sub.add_parser("catalogue", help="List tables and columns with their descriptions.")
    cat.add_argument("--data-dir", type=Path, default=None, help="Default: $SDE_DATA_DIR or /data.")
    cat.add_argument("--json", action="store_true", help="Print JSON.")
    args = parser.parse_args(argv)
    try:
        print_catalogue(args.data_dir, args.json)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
