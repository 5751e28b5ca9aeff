"""The rule registry: every finding id envtool can emit (lint, core, ensemble, compat, doctor, inject) has a test
that breaks it. The ids are read from the code itself (the first argument of Finding, _f, _finding, @rule and
the core/ensemble `add`, a `rule=` keyword, the tuples of model_repo.unservable), so a new rule without a test
fails here, naming it. A test counts when it builds input that fires the rule: an entry of test_lint's
BREAKERS (which asserts the rule fires; the core ones are also loaded by a real Triton), or an assertion that
names the id in another test module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.test_lint import BREAKERS

ROOT = Path(__file__).resolve().parents[1]
RULE_ID = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)+")
EMITTERS = {"Finding", "_f", "_finding", "rule", "add"}


def _name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def rule_ids() -> dict[str, str]:
    """id -> the module that emits it."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "envtool").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            texts = []
            if isinstance(node, ast.Call) and _name(node.func) in EMITTERS:
                if node.args and isinstance(node.args[0], ast.Constant):
                    texts.append(node.args[0].value)
                texts += [k.value.value for k in node.keywords if k.arg == "rule" and isinstance(k.value, ast.Constant)]
            elif isinstance(node, ast.FunctionDef) and node.name == "unservable":
                texts += [t.elts[0].value for t in ast.walk(node) if isinstance(t, ast.Tuple) and len(t.elts) == 4
                          and isinstance(t.elts[0], ast.Constant)]
            for text in texts:
                if isinstance(text, str) and RULE_ID.fullmatch(text):
                    found.setdefault(text, str(path.relative_to(ROOT)))
    return found


def _named_in_tests() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_rules.py")


def test_the_registry_reads_the_rules_of_every_engine():
    ids = rule_ids()
    assert len(ids) > 90
    for sample in ("env-no-activate", "io-dims", "ensemble-cycle", "stub-probe", "path-space", "inject-model"):
        assert sample in ids, sample


def test_every_rule_has_a_test_that_breaks_it():
    tests = _named_in_tests()
    untested = {rule: module for rule, module in rule_ids().items()
                if rule not in BREAKERS and f'"{rule}"' not in tests and f"'{rule}'" not in tests}
    assert not untested, f"rules no test breaks (add a BREAKERS entry or a test asserting the id): {untested}"
