"""docs/architecture.md's module table is the package's map: one line per module, none missing or stale."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "operator" / "whatsapp_operator"


def test_the_module_table_lists_every_module_of_the_package_once() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| `([\w/]+\.py)` \|", page, flags=re.MULTILINE)
    modules = sorted(
        str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if path.name != "__init__.py"
    )
    assert len(rows) == len(set(rows)), "a module has two lines"
    assert sorted(rows) == modules
