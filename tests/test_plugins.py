"""encore.plugins: how a user's ``package.module:Name`` is imported, and each way it can be wrong."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from encore.plugins import import_object, is_import_path


@pytest.fixture
def user_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "good_mod.py").write_text("class Outer:\n    class Inner:\n        pass\n")
    (tmp_path / "broken_syntax.py").write_text("def f(:\n")
    (tmp_path / "raises_at_import.py").write_text("raise RuntimeError('no database here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("good_mod", "broken_syntax", "raises_at_import"):
        sys.modules.pop(name, None)


def test_a_nested_name_is_found(user_modules: Path) -> None:
    assert import_object("good_mod:Outer.Inner").__qualname__ == "Outer.Inner"


@pytest.mark.parametrize("path", ["good_mod", "good_mod:", ":Outer", "good mod:Outer", "good_mod:Outer:Inner"])
def test_other_forms_are_not_import_paths(path: str) -> None:
    assert not is_import_path(path)
    with pytest.raises(ValueError, match=r"is not 'package\.module:Name'"):
        import_object(path)


@pytest.mark.parametrize(("path", "message"), [
    ("no_such_module_xyz:Thing", r"cannot import module 'no_such_module_xyz' \(No module named"),
    ("broken_syntax:f", r"cannot import module 'broken_syntax' \(SyntaxError: "),
    ("raises_at_import:X", r"cannot import module 'raises_at_import' \(RuntimeError: no database here\)"),
    ("good_mod:Missing", r"module 'good_mod' has no attribute 'Missing'"),
    ("good_mod:Outer.Missing", r"module 'good_mod' has no attribute 'Outer.Missing'"),
])
def test_each_problem_is_one_value_error(user_modules: Path, path: str, message: str) -> None:
    """A syntax error or an exception raised while the module imports is the user's problem to
    read in one line, not a traceback out of config validation."""
    with pytest.raises(ValueError, match=message):
        import_object(path)
