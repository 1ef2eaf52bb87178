"""Shared pieces of the CLI: the main group, backend options, one-line errors."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, NoReturn

import click

from rasd import __version__

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


class Failure(click.ClickException):
    """A one-line error for people: what is wrong and what to do. Exit code 2 by default."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        # click reads self.exit_code; click >= 8.5 types it as a class variable
        self.exit_code = exit_code  # type: ignore[misc,unused-ignore]

    def show(self, file: Any = None) -> None:
        click.echo(f"rasd: {self.format_message()}", err=True)


def fail(message: str, exit_code: int = EXIT_USAGE) -> NoReturn:
    raise Failure(message, exit_code)


def print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))


def setup_logging(level: str) -> None:
    """key=value lines to stderr (journald keeps them)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
        force=True,
    )


def backend_options(f: Any) -> Any:
    """``--backend nvml|fake`` and ``--scenario NAME|PATH``, shared by every live command."""
    f = click.option(
        "--scenario",
        metavar="NAME|PATH",
        default=None,
        help="Fake backend only: a packaged scenario name or a scenario TOML file.",
    )(f)
    f = click.option(
        "--backend",
        type=click.Choice(["nvml", "fake"]),
        default=None,
        help="Where readings come from. Default: NVML when it loads and reports a GPU.",
    )(f)
    return f


class _Main(click.Group):
    """The ``rasd`` group. Each area's commands load with their module when one of them is asked
    for (``rasd run`` loads the telemetry commands only: the daemon does not carry the replay,
    SDC or power commands); ``rasd --help`` loads them all, to show each one's help line."""

    areas: dict[str, str] = {}  # command name -> module whose register() adds it (rasd.cli sets it)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.areas))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.areas:
            import importlib

            importlib.import_module(self.areas[cmd_name]).register(self)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        # Tracebacks only with --log-level debug; everything else is one line and exit 2.
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            raise SystemExit(130) from None
        except BrokenPipeError:
            # `rasd status | head -1`: the reader has what it wanted. Point stdout at /dev/null so
            # the interpreter's last flush cannot complain, and end quietly.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise SystemExit(EXIT_OK) from None
        except Exception as e:  # noqa: BLE001 - the last line of defence for people
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            raise Failure(
                f"internal error: {type(e).__name__}: {e} (rerun with --log-level debug "
                "for a traceback, and report it)",
                exit_code=EXIT_FAIL,
            ) from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rasd")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    help="Log verbosity on stderr (rasd run defaults to its config's level).",
)
@click.pass_context
def main(ctx: click.Context, log_level: str) -> None:
    """rasd: GPU reliability and power daemon (telemetry, repair ladder, SDC checks, power)."""
    ctx.ensure_object(dict)
    ctx.obj["log_level"] = log_level
    setup_logging(log_level)


def load_config_or_fail(path: str | None) -> Any:
    """The TOML config (defaults when ``path`` is None); every problem printed, then exit 2."""
    from rasd import config as config_mod

    try:
        return config_mod.load(path)
    except config_mod.ConfigError as e:
        for p in e.problems[:-1]:
            click.echo(f"rasd: {e.source}: {p}", err=True)
        fail(f"{e.source}: {e.problems[-1]}")


def open_backend_or_fail(
    backend: str | None, scenario: str | None, unavailable_code: int = EXIT_FAIL, **kw: Any
) -> Any:
    """Open a backend for a command: a bad scenario exits 2, no usable NVML ``unavailable_code``."""
    from rasd.backends import open_backend
    from rasd.backends.errors import BackendUnavailable, BadScenario

    try:
        return open_backend(backend, scenario, **kw)
    except BadScenario as e:
        fail(str(e))
    except BackendUnavailable as e:
        fail(str(e), unavailable_code)


def config_option(f: Any) -> Any:
    """``--config PATH``: whose daemon.control_socket and daemon.state_path a command uses."""
    return click.option(
        "--config", "config_path", metavar="PATH", default=None, type=click.Path(dir_okay=False),
        help="TOML configuration (its [daemon] socket and state paths, and its settings).",
    )(f)


def daemon_paths(cfg: Any, backend: str | None) -> tuple[str, str]:
    """(control socket, state path) as the daemon with config ``cfg`` and this backend uses them."""
    from rasd.paths import default_control_socket, default_state_path

    name = backend or "nvml"
    return (cfg.daemon.control_socket or default_control_socket(name),
            cfg.daemon.state_path or default_state_path(name))


def ask_daemon(socket_path: str, state_path: str, payload: dict[str, Any], timeout: float = 5.0,
               denied_ok: bool = False) -> dict[str, Any] | None:
    """The running daemon's answer, or None when no daemon runs.

    A daemon that runs but cannot be asked (no permission, no answer) is an error, never a
    reason to act without it; with ``denied_ok`` a permission refusal returns None (read-only
    commands then show what this user can see, and say so)."""
    from rasd.control import ControlDenied, ControlUnavailable, request
    from rasd.instance import holder_pid

    try:
        reply = request(socket_path, payload, timeout)
    except ControlDenied as e:
        if denied_ok:
            click.echo(f"rasd: {e}", err=True)
            return None
        fail(str(e))
    except ControlUnavailable as e:
        pid = holder_pid(state_path)
        if pid is not None:
            fail(f"a rasd daemon (pid {pid}) runs on {state_path} but {e}; pass the --config it runs "
                 "with, or check its log")
        return None
    if not reply.get("ok", False):
        fail(f"the daemon refused: {reply.get('error', 'no reason given')}")
    return reply
