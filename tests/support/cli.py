"""Running the `sde` command in-process, as a user would call it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sde.cli.main import main


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_sde(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)
