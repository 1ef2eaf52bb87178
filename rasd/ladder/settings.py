"""Settings of the repair ladder ([ladder]) and of its actions ([actions]).

Every threshold and window of classification and escalation lives here with its default; the
config loader validates the TOML tables against these fields, and ``validate`` adds the
cross-field checks.
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

HOUR = 3600.0
DAY = 24 * HOUR

# Names an [actions.commands] entry may use: a rung that does something at the node, or a
# degradation.
ACTION_KINDS = (
    "restart_process",
    "reset_gpu",
    "reboot_node",
    "rma",
    "drain",
    "stop_p2p",
    "disable_link",
    "exclude_gpu",
)
PLACEHOLDERS = ("gpu_index", "gpu_uuid", "pci_bus_id", "hostname", "link")


@functools.lru_cache(maxsize=64)
def _codes(codes: tuple[str, ...]) -> frozenset[int]:
    return frozenset(int(c) for c in codes if c.isdigit())


@dataclass(frozen=True, slots=True)
class LadderSettings:
    # A cure holds when the same fault class does not come back on the component within this time.
    cure_window_seconds: float = DAY
    # Remedies that did not hold, per rung, before the ladder climbs past that rung.
    restarts_not_holding: int = 1
    resets_not_holding: int = 2  # NVSentinel: a GPU reset that does not hold -> reboot
    reboots_not_holding: int = 2  # two reboots that do not hold -> RMA
    not_holding_memory_seconds: float = 7 * DAY
    # Recurrence of one Xid on one GPU (NVSentinel's defaults).
    xid_recurrence_count: int = 5
    xid_recurrence_window_seconds: float = DAY
    xid_burst_seconds: float = 180.0
    xid_long_burst_seconds: float = 3 * HOUR
    xid_long_burst_codes: tuple[str, ...] = ("74", "79", "95", "109", "119")
    # Lines of one Xid on one GPU closer than this to the previous line are one fault (the driver
    # prints several lines for one SM exception, one per channel for Xid 45): one occurrence for
    # every repeat rule, never a repeat of itself.
    xid_line_burst_seconds: float = 1.0
    # An open decision below RMA whose fault has not come back on its component for this long
    # closes ("expired"), so an old investigation is not inherited by an unrelated new fault.
    decision_window_seconds: float = 7 * DAY
    # Remedies on one node before a technician should look at the node.
    node_remedy_count: int = 5
    node_remedy_window_seconds: float = 7 * DAY
    # Xid 13 / 31 workflows: a repeat on one GPU within this window asks for an SDC check.
    xid_repeat_window_seconds: float = DAY
    # Xids that arrive together (45 with its cause, 48 with 63/64) within this window.
    xid_companion_seconds: float = 10.0
    # DCGM retired-page limits.
    retired_pages_limit: int = 63
    retired_dbe_pages_limit: int = 15
    retired_dbe_recent_limit: int = 1
    retired_dbe_recent_seconds: float = 7 * DAY
    # DCGM NVLink thresholds: any replay/recovery error fails; CRC errors fail at this rate.
    nvlink_crc_fail_per_second: float = 100.0
    # Xid 74 ECC/parity bits on one link more than this many times -> hardware.
    nvlink_parity_repeats: int = 2
    # Several downs of one link within the window is a flapping link.
    link_flap_count: int = 3
    link_flap_window_seconds: float = HOUR
    # DCGM PCIe replay rate: lanes x per-lane rate per minute (per-lane rate by PCIe generation).
    pcie_replay_per_lane_per_minute_gen4: float = 0.96
    pcie_replay_per_lane_per_minute_gen5: float = 1.92
    pcie_default_window_seconds: float = 60.0
    # Capacity weights of the RMA queue.
    nvlinks_per_gpu: int = 18
    gpus_per_node: int = 8
    # IGNORE-bucket Xids whose error reaches an application ("exception" rather than "none").
    application_visible_xids: tuple[str, ...] = ("37", "43", "44", "66", "67", "108", "137", "141")

    def validate(self) -> list[str]:
        problems: list[str] = []
        for name in ("restarts_not_holding", "resets_not_holding", "reboots_not_holding",
                     "xid_recurrence_count", "node_remedy_count", "link_flap_count"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be at least 1")
        for name in ("cure_window_seconds", "not_holding_memory_seconds",
                     "xid_recurrence_window_seconds", "node_remedy_window_seconds",
                     "xid_repeat_window_seconds", "link_flap_window_seconds",
                     "retired_dbe_recent_seconds", "pcie_default_window_seconds",
                     "decision_window_seconds"):
            if getattr(self, name) <= 0:
                problems.append(f"{name}: must be positive (seconds)")
        if self.xid_burst_seconds < 0 or self.xid_long_burst_seconds < 0 or \
                self.xid_line_burst_seconds < 0:
            problems.append("xid_burst_seconds: bursts must not be negative")
        for name in ("xid_long_burst_codes", "application_visible_xids"):
            bad = [c for c in getattr(self, name) if not c.isdigit()]
            if bad:
                problems.append(f"{name}: {', '.join(bad)} are not Xid numbers; use e.g. [\"79\"]")
        if self.nvlinks_per_gpu < 1 or self.gpus_per_node < 1:
            problems.append("gpus_per_node: GPU and link counts must be at least 1")
        return problems

    def long_burst_codes(self) -> frozenset[int]:
        return _codes(self.xid_long_burst_codes)

    def app_visible(self) -> frozenset[int]:
        return _codes(self.application_visible_xids)

    @property
    def horizon_seconds(self) -> float:
        """How much history escalation needs after a restart (the longest window)."""
        return max(self.cure_window_seconds, self.not_holding_memory_seconds,
                   self.xid_recurrence_window_seconds, self.node_remedy_window_seconds,
                   self.xid_repeat_window_seconds, self.link_flap_window_seconds,
                   self.retired_dbe_recent_seconds)


@dataclass(frozen=True, slots=True)
class ActionSettings:
    """What runs when a decision is made. Advisory (nothing runs) unless ``enforce`` is true.

    ``commands`` maps an action kind (a rung or a degradation, see ACTION_KINDS) to an argument
    list, run without a shell; placeholders {gpu_index} {gpu_uuid} {pci_bus_id} {hostname} {link}.
    """

    enforce: bool = False
    commands: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    timeout_seconds: float = 300.0
    # Never the same kind of action on one component more often than this.
    min_interval_seconds: float = 600.0
    # And at most this many actions per hour on the node, all kinds together.
    max_actions_per_hour: int = 10
    output_tail_bytes: int = 2048

    def validate(self) -> list[str]:
        problems: list[str] = []
        for kind, argv in self.commands.items():
            if kind not in ACTION_KINDS:
                problems.append(
                    f"commands.{kind}: unknown action; use one of {', '.join(ACTION_KINDS)}")
                continue
            if not argv:
                problems.append(f"commands.{kind}: empty argument list; give the program first")
            for arg in argv:
                try:
                    names = [f for _, f, _, _ in string.Formatter().parse(arg) if f is not None]
                except ValueError as e:
                    problems.append(f"commands.{kind}: bad placeholder in {arg!r} ({e})")
                    continue
                bad = [n for n in names if n not in PLACEHOLDERS]
                if bad:
                    problems.append(
                        f"commands.{kind}: unknown placeholder {{{bad[0]}}}; "
                        f"use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
        if self.timeout_seconds <= 0:
            problems.append("timeout_seconds: must be positive")
        if self.min_interval_seconds < 0:
            problems.append("min_interval_seconds: must not be negative")
        if self.max_actions_per_hour < 1:
            problems.append("max_actions_per_hour: must be at least 1")
        if self.output_tail_bytes < 0:
            problems.append("output_tail_bytes: must not be negative")
        return problems
