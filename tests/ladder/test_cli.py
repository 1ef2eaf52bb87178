"""The ladder's commands: explain, replay (history and ladder are in test_service.py, over the
store the service wrote)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from rasd.cli import main

LOG = "\n".join([
    '{"time": "2025-01-31T12:00:00Z", "kind": "xid", "gpu": 3, "xid": 79}',
    '{"time": 1738325000, "kind": "nvlink", "gpu": 1, "link": 4, "state": "down"}',
    '{"time": "2025-01-31T12:05:00+00:00", "kind": "sdc", "gpu": 2, "verdict": "suspect"}',
    '{"time": 1738325400.5, "kind": "remedy", "gpu": 3, "action": "reboot_node", "result": "ok"}',
])


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input)


def test_explain_xid_json():
    r = run("explain", "xid", "79", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["rung"] == "reboot_node" and out["scope"] == "node" and out["reason"]
    assert out["buckets"]["immediate"] == "RESTART_BM"
    r = run("explain", "xid", "74", "--message", "fatal error on link 9", "--json")
    assert json.loads(r.output)["scope"] == "link"
    assert run("explain", "xid", "13").exit_code == 0


def test_replay_good_log(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text(LOG)
    r = run("replay", str(p), "--json")
    assert r.exit_code == 0, r.output
    ds = json.loads(r.output)["decisions"]
    assert [d["rung"] for d in ds] == ["reboot_node", "reset_gpu", "none"]
    assert ds[0]["time"] == 1738324800.0 and ds[0]["link"] is None
    assert ds[1]["link"] == 4 and ds[1]["scope"] == "link"
    assert all(set(d) >= {"time", "gpu", "link", "rung", "scope", "reason", "investigate"}
               for d in ds)
    assert ds[2]["investigate"] == ["sdc_check"]
    assert run("replay", str(p), "--json").output == r.output  # twice, the same
    plain = run("replay", str(p))
    assert plain.exit_code == 0 and "rung=reboot_node" in plain.output


def test_replay_bad_line_reports_line_number(tmp_path):
    p = tmp_path / "e.jsonl"
    for bad in ('{"time": 1, "kind": "xid"}', "not json", '{"time": "yesterday", "kind": '
                '"thermal", "gpu": 0}', '{"time": 1, "kind": "remedy", "gpu": 0, "action": '
                '"fix", "result": "ok"}', '{"time": "2025-01-01T00:00:00", "kind": "thermal", '
                '"gpu": 0}'):
        p.write_text(LOG + "\n" + bad + "\n")
        r = run("replay", str(p))
        assert r.exit_code == 2, (bad, r.output)
        assert "line 5" in r.output and "Traceback" not in r.output


def test_replay_not_json_names_the_column_within_the_line(tmp_path):
    """A line cut short is reported at its own last column (the line end read with it does not
    count), as a parser given the line alone reports it."""
    p = tmp_path / "e.jsonl"
    p.write_text(LOG + "\n" + '{"time": 2, "gpu":' + "\n")
    r = run("replay", str(p))
    assert r.exit_code == 2
    assert "line 5: not JSON (" in r.output and "at column 19)" in r.output, r.output


def test_replay_bad_field_types_name_the_line_and_keep_what_came_before(tmp_path):
    """A field of the wrong type (a number for an Xid's message, a list for its architecture)
    is a bad line like any other: one line naming it and its field, exit 2; the decisions of
    the lines before it are still printed, each once."""
    p = tmp_path / "e.jsonl"
    for bad, field in (
            ('{"time": 1738326000, "kind": "xid", "gpu": 1, "xid": 13, "message": 42}',
             "message"),
            ('{"time": 1738326000, "kind": "xid", "gpu": 1, "xid": 79, "message": true}',
             "message"),
            ('{"time": 1738326000, "kind": "xid", "gpu": 1, "xid": 74, "message": [1]}',
             "message"),
            ('{"time": 1738326000, "kind": "xid", "gpu": 1, "xid": 79, "architecture": ["h"]}',
             "architecture"),
            ('{"time": 1738326000, "kind": "xid", "gpu": 1, "xid": 48, "architecture": {}}',
             "architecture")):
        p.write_text(LOG + "\n" + bad + "\n")
        r = run("replay", str(p))
        assert r.exit_code == 2, (bad, r.output)
        said = [ln for ln in r.output.splitlines() if "line 5" in ln]
        assert len(said) == 1 and "Traceback" not in r.output, r.output
        assert f"{field}:" in said[0] and "fix or remove" in said[0], said
        assert "internal error" not in r.output, r.output
        assert r.output.count("rung=reboot_node") == 1, r.output  # line 1's decision, kept
