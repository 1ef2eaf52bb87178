"""The config loader: every problem reported at once, defaults and ranges."""

from __future__ import annotations

import pytest

from rasd import config


def test_config_reports_every_problem_at_once(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[daemon]\nlisten = "nowhere"\nbogus = 1\n[telemetry]\npower_sample_hz = "fast"\n[nope]\n')
    with pytest.raises(config.ConfigError) as e:
        config.load(p)
    text = str(e.value)
    for needle in ("daemon.bogus", "power_sample_hz", "[nope]"):
        assert needle in text
    assert all(line.startswith(str(p)) for line in text.splitlines())


def test_config_defaults_and_ranges(tmp_path):
    cfg = config.load(None)
    assert cfg.telemetry.power_sample_hz == 12.5 and cfg.daemon.listen.endswith(":9863")
    with pytest.raises(config.ConfigError, match="between 1 and 100"):
        config.parse("[telemetry]\npower_sample_hz = 500\n")
    assert config.parse("[telemetry]\npower_sample_hz = 100\n").telemetry.power_sample_hz == 100
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.toml")
