"""`sde-airlock`: airlock requests from a workspace's terminal.

    sde-airlock request create                       # prints the new request's id
    sde-airlock request add ID results/counts.csv --group tables
    sde-airlock request add ID results/method.md --group tables --kind supporting
    sde-airlock request context ID tables --context "..." --controls "..."
    sde-airlock request submit ID
    sde-airlock request status ID [--json]
    sde-airlock request withdraw ID

Errors print one line and exit 2 (the airlock refused: the request is unchanged).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sde.outputs import AirlockError, Request, files_of, new_request, requests


def _print_status(found: dict[str, Any]) -> None:
    print(f"{found.get('id', '?')}: {found.get('status', '?')} ({found.get('project', '')})")
    for f in files_of(found):
        checks = f.get("checks") or {}
        state = checks.get("status", "") if isinstance(checks, dict) else ""
        print(f"  {f.get('kind', ''):<10} {f.get('group', ''):<16} {f.get('name', '')}  {state}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sde-airlock", description="Airlock requests of this workspace's project."
    )
    top = parser.add_subparsers(dest="group", required=True)
    req = top.add_parser("request", help="Create, fill, submit and follow a request.")
    sub = req.add_subparsers(dest="command", required=True)
    sub.add_parser("create", help="A new egress request; prints its id.")
    sub.add_parser("list", help="My requests.")
    add = sub.add_parser("add", help="Add a file of the work directory.")
    add.add_argument("id")
    add.add_argument("paths", nargs="+")
    add.add_argument("--group", default="outputs", help="The file group (default: outputs).")
    add.add_argument("--kind", choices=("output", "supporting"), default="output")
    ctx = sub.add_parser("context", help="A group's context and controls.")
    ctx.add_argument("id")
    ctx.add_argument("group")
    ctx.add_argument("--context", required=True, help="What the files are.")
    ctx.add_argument("--controls", required=True, help="How disclosure was controlled.")
    for name, text in (
        ("submit", "Hand the request to the output checkers."),
        ("withdraw", "Give the request up (final)."),
    ):
        sub.add_parser(name, help=text).add_argument("id")
    st = sub.add_parser("status", help="The request's state, files and check results.")
    st.add_argument("id")
    st.add_argument("--json", action="store_true", help="Print JSON.")
    args = parser.parse_args(argv)
    try:
        if args.command == "create":
            print(new_request().id)
        elif args.command == "list":
            for found in requests():
                print(f"{found.get('id')}  {found.get('status')}  {found.get('direction', '')}")
        elif args.command == "add":
            request = Request(args.id)
            for path in args.paths:
                added = request.add(path, kind=args.kind, group=args.group)
                checks = added.get("checks") or {}
                state = checks.get("status", "added") if isinstance(checks, dict) else "added"
                print(f"{added.get('name', path)}: {state}")
        elif args.command == "context":
            Request(args.id).context(args.group, args.context, args.controls)
        elif args.command == "status":
            found = Request(args.id).status()
            if args.json:
                print(json.dumps(found, indent=1))
            else:
                _print_status(found)
        else:
            done = getattr(Request(args.id), args.command)()
            print(f"{args.id}: {done.get('status', args.command)}")
    except AirlockError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
