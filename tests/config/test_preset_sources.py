"""Every constant of a hardware preset or a framework profile has its source beside it: an inline comment, or
a comment on the line above (a header above the constants explains them at length)."""

from __future__ import annotations

import re

import pytest

from hwsim.config.load import FRAMEWORK_DIR, PRESET_DIR

FILES = sorted(PRESET_DIR.glob("*.yaml")) + sorted(FRAMEWORK_DIR.glob("*.yaml"))


def unsourced(text: str) -> list[str]:
    """The lines that set a value (a key with a value, or a list item) with no comment on them or right above
    them; a `name:` is a label, not a constant."""
    out, above = [], ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        code = line.split("#", 1)[0]
        sets = bool(re.search(r":\s*\S", code)) or code.strip().startswith("- ")
        if sets and "#" not in line and not above.startswith("#") and not re.match(r"\s*name:", line):
            out.append(f"line {number}: {stripped}")
        above = stripped
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_constant_has_its_source_beside_it(path):
    assert unsourced(path.read_text()) == [], path


def test_the_check_finds_a_constant_without_a_source():
    text = "name: x\nsystolic:\n  rows: 16\n  cols: 8  # whitepaper\n  # datasheet\n  clock: 1 GHz\n  dims:\n    - {kind: ring}\n"
    assert unsourced(text) == ["line 3: rows: 16", "line 8: - {kind: ring}"]
    assert len(FILES) >= 9
