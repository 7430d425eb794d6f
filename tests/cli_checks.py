"""The one assertion of a refused command line, shared by the bad-input test modules."""

from typer.testing import CliRunner

from steerscope.cli import app


def bad(args: list, *needles: str, env: dict | None = None) -> str:
    """Run the CLI; assert exit 2, exactly one stderr line `error: ...` containing every needle, no traceback."""
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
