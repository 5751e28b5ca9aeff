#!/usr/bin/env python3
"""How right lint is about what Triton's core does: one real r24.10 server (nvidia-pytriton wheel) loads a
repository, and lint's verdict on each model is compared with Triton's.

    python benchmarks/lint_fidelity.py [--repo DIR ...]

Without --repo it builds the repository from the test fixtures (one model per lint rule that has a Triton
text: tests/test_lint.py BREAKERS, plus configs Triton loads). Pass model repositories of your own, e.g.
Triton's QA material laid out as its test scripts lay it out ($ENVTOOL_QA_REPOS, colon-separated), to
measure those. It prints:
- false errors: lint errors on models Triton loaded (target 0);
- rejected flagged: models Triton rejected that lint flags with an error (target >= 95%);
- with Triton's text: of those, the share whose lint finding carries the text Triton printed (>= 85%).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envtool import api  # noqa: E402
from envtool.catalog import normalize_release  # noqa: E402
from envtool.servers.embedded import EmbeddedServer  # noqa: E402
from tests.conftest import write_repo  # noqa: E402
from tests.test_lint import ADD, BREAKERS, GOOD_STEP, ensemble  # noqa: E402


def fixture_repo(root: Path) -> Path:
    """One model per rule (renamed r_<rule>), the models they lean on, and a good ensemble."""
    configs = {"good": ensemble("good", steps=GOOD_STEP), "add": ADD}
    for rule, make in sorted(BREAKERS.items()):
        parts = make()
        key = "ens" if "ens" in parts else "add"
        name = "r_" + rule.replace("-", "_")
        configs[name] = parts.pop(key).replace(f'name: "{key}"', f'name: "{name}"')
        configs.update({k: v for k, v in parts.items() if k not in configs})
    return write_repo(root / "fixtures", configs)


def measure(repo: Path) -> dict:
    findings = api.lint(repo)
    with EmbeddedServer(normalize_release("r24.10"), repo) as server:
        server.wait_live(600)
        states, log = server.model_states(), server.log()
    errors: dict[str, list] = {}
    for f in findings:
        if f.severity == "error" and f.model:
            errors.setdefault(f.model, []).append(f)
    loaded = {n for n, s in states.items() if s["state"] == "READY"}
    rejected = {n for n, s in states.items() if s["state"] != "READY"}
    flagged = rejected & set(errors)
    texts = {n for n in flagged
             if any(f.triton and f.triton in (states[n]["reason"] + log) for f in errors[n])}
    return {"models": len(states), "loaded": len(loaded), "false_errors": sorted(loaded & set(errors)),
            "rejected": len(rejected), "flagged": len(flagged), "with_text": len(texts),
            "unflagged": sorted(rejected - flagged), "without_text": sorted(flagged - texts)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", action="append", type=Path, default=[])
    args = ap.parse_args()
    repos = args.repo + [Path(p) for p in os.environ.get("ENVTOOL_QA_REPOS", "").split(":") if p]
    with tempfile.TemporaryDirectory() as tmp:
        for repo in repos or [fixture_repo(Path(tmp))]:
            r = measure(repo)
            share = r["flagged"] / r["rejected"] if r["rejected"] else 1.0
            text = r["with_text"] / r["flagged"] if r["flagged"] else 1.0
            print(f"{repo.name}: {r['models']} models, {r['loaded']} loaded, {r['rejected']} rejected")
            print(f"  false errors on loaded models: {len(r['false_errors'])} {r['false_errors'] or ''}")
            print(f"  rejected flagged: {r['flagged']}/{r['rejected']} ({share:.0%}) {r['unflagged'] or ''}")
            print(f"  with Triton's text: {r['with_text']}/{r['flagged']} ({text:.0%}) {r['without_text'] or ''}")


if __name__ == "__main__":
    main()
