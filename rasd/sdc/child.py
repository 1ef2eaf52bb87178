"""The check process the daemon starts on real GPUs (``python -m rasd.sdc.child``; the daemon's
side is ``rasd.sdc.isolated``), and what it sends back.

It reads one JSON request on stdin, writes JSON lines on stdout (progress, then one answer),
logs to stderr at the daemon's level, builds an engine (a CUDA context) only for the GPUs it
uses, and is killed when the daemon's thread that started it ends (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from typing import Any, Mapping, Sequence

from rasd.sdc.locks import GpuLocks
from rasd.sdc.results import Cancelled, ChecksUnavailable, Outcome, Result, RunReport
from rasd.sdc.settings import SdcSettings

log = logging.getLogger(__name__)


# -- the wire format: a report as the store keeps it ------------------------------------------

def outcome_to_wire(outcome: Outcome) -> dict[str, Any]:
    r = outcome.report
    return {
        "report": {"level": r.level, "seed": r.seed, "started_wall": r.started_wall, "seconds": r.seconds,
                   "notes": list(r.notes),
                   "gpus": [{"gpu": g.gpu, "checks": [
                       {"name": c.name, "result": c.result.value, "seconds": c.seconds, "gflops": c.gflops,
                        "evidence": dict(c.evidence)} for c in g.checks]} for g in r.gpus]},
        "rounds": {str(g): [x.value for x in rs] for g, rs in outcome.rounds.items()},
    }


def outcome_from_wire(d: Mapping[str, Any]) -> Outcome:
    rounds = {int(g): tuple(Result(x) for x in rs) for g, rs in d["rounds"].items()}
    return Outcome(RunReport.from_dict(d["report"]), rounds)


# -- the child ---------------------------------------------------------------------------------

def _settings(d: Mapping[str, Any]) -> SdcSettings:
    fields = {f.name for f in dataclasses.fields(SdcSettings)}
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in fields}
    return SdcSettings(**values)


def _reason(e: Exception) -> str:
    # rasd's own refusals are written for people; others are named by their class
    names = ("EngineUnavailable", "BackendUnavailable", "ChecksUnavailable")
    return str(e) if type(e).__name__ in names else f"{type(e).__name__}: {e}"


def _say(msg: Mapping[str, Any]) -> None:
    # default=str: what the store would write for a value JSON has no form for
    sys.stdout.write(json.dumps(msg, default=str) + "\n")
    sys.stdout.flush()


def child(request: Mapping[str, Any]) -> dict[str, Any]:
    """Run the one check ``request`` asks for, with engines for the GPUs it uses only; the
    answer to print."""
    from rasd.backends import open_backend
    from rasd.sdc.retry import is_permanent

    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    settings = _settings(request["settings"])
    try:
        # the engines' libraries (NumPy, and CuPy on real GPUs): missing ones are a permanent reason,
        # installed ones that fail to load a transient one
        from rasd.sdc.engines import engines_for_backend
        from rasd.sdc.validation import Validator
    except ImportError as e:
        return {"unavailable": _reason(e), "permanent": is_permanent(e)}
    b = request["backend"]
    idle = "idle" if b.get("kind") == "fake" else None  # the fake's checks want idle GPUs (tests)
    try:
        backend = open_backend(b.get("kind"), b.get("scenario"), workload=idle)
    except Exception as e:  # noqa: BLE001 - no backend, no engine: the reason is given
        return {"unavailable": _reason(e), "permanent": is_permanent(e)}

    def build(gpus: Sequence[int]) -> Any:
        try:
            return engines_for_backend(backend, settings.seed, settings.numpy_memory_bytes, set(gpus))
        except Exception as e:  # noqa: BLE001 - whatever stops the build is the reason given
            raise ChecksUnavailable(_reason(e), is_permanent(e)) from e

    try:
        handles = {g.index: g for g in backend.adapter.gpus()}
        validator = Validator(settings, handles, build, GpuLocks(request.get("lock_dir")))
        outcome = validator.run(
            request["targets"], request["level"], force=bool(request.get("force")), seed=request.get("seed"),
            progress=lambda done, total, label: _say({"progress": [done, total, label]}), cancel=cancel,
            wait_seconds=float(request.get("wait_seconds", 0.0)), scale=float(request.get("scale", 1.0)),
            witnesses=request.get("witnesses"),
        )
    except Cancelled:
        return {"cancelled": True}
    except ChecksUnavailable as e:
        return {"unavailable": str(e), "permanent": e.permanent}
    except ValueError as e:  # a refusal (a bad request): its message says it all
        return {"error": f"ValueError: {e}"}
    except Exception as e:  # noqa: BLE001 - reported to the daemon, which logs it
        log.exception("event=sdc_check_failed")
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        backend.close()
    return {"outcome": outcome_to_wire(outcome)}


def _die_with_parent() -> None:
    """Be killed when the daemon's thread that started this process ends (PR_SET_PDEATHSIG):
    a daemon that dies leaves no check running on its GPUs."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the daemon's close() still kills it
        pass


def main() -> None:
    _die_with_parent()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="level=%(levelname)s logger=%(name)s %(message)s")
    try:
        request = json.loads(sys.stdin.read())
        if not isinstance(request, dict):
            raise ValueError("the request is not a JSON object")
    except ValueError as e:
        _say({"error": f"ValueError: bad request on stdin: {e}"})
        sys.exit(2)
    parent = request.get("parent")
    if isinstance(parent, int) and os.getppid() != parent:
        sys.exit(1)  # the daemon ended before the signal was set: nobody to check for
    level = request.get("log_level")
    if isinstance(level, int):
        logging.getLogger().setLevel(level)  # the daemon's --log-level
    _say(child(request))


if __name__ == "__main__":
    main()
