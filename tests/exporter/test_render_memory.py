"""The renderer across renders: every render reads as prometheus_client writes it, whichever of
its paths a family takes (copied from the last body, formatted with kept prefixes, formatted from
its template), and what it keeps between renders is the body and the prefixes of the families
that keep changing, nothing more."""

from __future__ import annotations

import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from exporters.family import CounterFamily, Family, GaugeFamily, TextRenderer
from exporters.prometheus import Rendered

LABEL = st.text(alphabet=st.sampled_from('ab0"\\\n-'), max_size=4)  # quotes, backslashes, newlines too


class _Registry:
    def __init__(self, families: list[Family]) -> None:
        self.families = families

    def collect(self):  # type: ignore[no-untyped-def]
        return iter(self.families)


def _families(step: dict[str, list[tuple[tuple[str, str], float]]]) -> list[Family]:
    """Three families; label names out of order in one, as sections declare them."""
    out: list[Family] = []
    for name, rows in sorted(step.items()):
        fam = (CounterFamily if name == "rasd_c" else GaugeFamily)(name, f"help of {name}", labels=["zone", "gpu"])
        seen = set()
        for labels, v in rows:
            if labels not in seen:  # one series per label set, as a registry requires
                seen.add(labels)
                fam.add_metric(list(labels), v)
        out.append(fam)
    out.append(GaugeFamily("rasd_plain", "no labels", value=1.0))
    return out


STEP = st.dictionaries(st.sampled_from(["rasd_a", "rasd_b", "rasd_c"]),
                       st.lists(st.tuples(st.tuples(LABEL, LABEL), st.sampled_from([0.0, 1.5, 1e7, float("inf")])),
                                max_size=5),
                       min_size=1)


@settings(max_examples=60, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=6), st.data())
def test_every_render_reads_as_generate_latest(steps, data) -> None:  # type: ignore[no-untyped-def]
    r = TextRenderer()
    for step in steps:
        # a step repeated as it was: the families are copied from the last body
        for _ in range(data.draw(st.integers(1, 2))):
            fams = _families(step)
            body, index = r.render(fams)
            assert body.decode() == generate_latest(_Registry(fams)).decode()  # type: ignore[arg-type]
            # each family's text lies where the index says, one after another
            assert [n for n, _, _ in index] == [f.sample_name for f in fams]
            assert b"".join(body[s:e] for _, s, e in index) == body
            rendered = Rendered(None, index, body)
            for f in fams:
                alone = generate_latest(_Registry([f])).decode()  # type: ignore[arg-type]
                assert rendered.select(frozenset([f.sample_name])).decode() == alone


def _node(power: float, links: float) -> list[Family]:
    p = GaugeFamily("rasd_power", "power", labels=["gpu"])
    e = CounterFamily("rasd_link_errors", "link errors", labels=["gpu", "link"])
    for g in range(4):
        p.add_metric([str(g)], power + g)
        for ln in range(6):
            e.add_metric([str(g), str(ln)], links)
    return [p, e]


def test_only_families_that_keep_changing_keep_their_prefixes() -> None:
    r = TextRenderer()
    first, _ = r.render(_node(100.0, 0.0))
    assert r._prefixes == {"rasd_power": {}, "rasd_link_errors_total": {}}  # first render: formatted, nothing kept
    r.render(_node(101.0, 0.0))  # power changed again, the links did not
    assert set(r._prefixes) == {"rasd_power"} and len(r._prefixes["rasd_power"]) == 4
    r.render(_node(102.0, 3.0))  # a link counter moved once: formatted, its prefixes not kept
    assert len(r._prefixes["rasd_power"]) == 4 and r._prefixes["rasd_link_errors_total"] == {}
    body, _ = r.render(_node(103.0, 4.0))  # and again: now kept
    assert len(r._prefixes["rasd_link_errors_total"]) == 24
    assert body.decode() == generate_latest(_Registry(_node(103.0, 4.0))).decode()  # type: ignore[arg-type]
    r.render(_node(103.0, 4.0))  # nothing changed: nothing formatted, nothing kept
    assert r._prefixes == {}
    # the body is the one copy of the text it keeps
    body, _ = r.render(_node(104.0, 4.0))
    assert r._body is body


def _one(pairs: list[tuple[str, float]]) -> list[Family]:
    f = GaugeFamily("rasd_t", "t", labels=["gpu"])
    for g, v in pairs:
        f.add_metric([g], v)
    return [f]


def test_a_family_is_copied_only_when_its_label_values_and_values_are_both_unchanged() -> None:
    """A render keeps each family's two lists (label values, values) as the family holds them,
    no tuple a series, and compares both with the next: the same values under other labels, or
    other values under the same labels, are formatted again; both the same, copied."""
    r = TextRenderer()
    steps = [[("0", 1.0), ("1", 2.0)], [("0", 1.0), ("1", 2.0)],  # unchanged: copied
             [("2", 1.0), ("3", 2.0)],  # same values, other labels
             [("2", 2.0), ("3", 1.0)],  # same labels, other values
             [("2", 2.0), ("3", 1.0), ("4", 0.0)], [("2", 2.0)]]  # a series more, then fewer
    for pairs in steps:
        fams = _one(pairs)
        body, _ = r.render(fams)
        assert body.decode() == generate_latest(_Registry(fams)).decode()  # type: ignore[arg-type]
        kept = r._last["rasd_t"]
        assert kept[0] is fams[0].keys and kept[1] is fams[0].values
    assert fams[0].rows == [(("2",), 2.0)]
    assert [(s.name, s.labels, s.value) for s in fams[0].samples] == [("rasd_t", {"gpu": "2"}, 2.0)]


def test_number_spellings_kept_are_the_last_renders_only() -> None:
    """Watts and energy counters are new numbers nearly every snapshot: the spellings kept are
    those the last render used (a level that repeats is carried over), not every number seen."""
    r = TextRenderer()
    for k in range(200):
        body, _ = r.render(_node(100.0 + k * 0.001, float(k // 50)))
        assert len(r._values) <= 4 + 1  # four GPUs' watts, the links' one count
    assert body.decode() == generate_latest(_Registry(_node(100.0 + 199 * 0.001, 3.0))).decode()  # type: ignore[arg-type]
    for links in (5.0, 6.0, 5.0):  # a count that comes back after a render without it: spelled again
        body, _ = r.render(_node(60.0 + links, links))
        assert r._values[links] == f"{links}\n".encode() and 60.0 + links + 3 in r._values
        assert body.decode() == generate_latest(_Registry(_node(60.0 + links, links))).decode()  # type: ignore[arg-type]


def _lean(env: dict[str, str]) -> str:
    code = "from rasd.heap import lean_malloc; print(sorted(lean_malloc()))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_malloc_settings_leave_what_the_operator_chose() -> None:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    if not os.confstr("CS_GNU_LIBC_VERSION"):
        assert _lean(base) == "[]"  # not glibc: nothing to set
        return
    assert _lean(base) == "['arena_max', 'mmap_threshold']"
    assert _lean(dict(base, MALLOC_ARENA_MAX="4")) == "['mmap_threshold']"
    assert _lean(dict(base, GLIBC_TUNABLES="glibc.malloc.mmap_threshold=65536")) == "['arena_max']"
