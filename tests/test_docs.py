"""The docs keep up with the code: every setting is in the README's settings table."""

import re
from pathlib import Path

from openft.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_in_the_readme_settings_table():
    section = README.read_text().split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(OPENFT_[A-Z0-9_]+)`", section))
    expected = {f"OPENFT_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set(), "add these to README.md's Settings table"
    assert documented - expected == set(), "README.md's Settings table names settings that do not exist"
