"""README's configuration reference is the one generated from systemd/rasd.toml."""

from pathlib import Path

from tests.deploy.config_reference import reference

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_config_reference_matches_the_sample():
    ref = reference()
    assert ref.count("| `") >= 80
    assert ref.strip() in README.read_text(), "regenerate with: python -m tests.deploy.config_reference"
