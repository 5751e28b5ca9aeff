#!/usr/bin/env python3
"""How right lint is about what Triton's core does: one real r24.10 server (nvidia-pytriton wheel) loads a
repository, and lint's verdict on each model is compared with Triton's.

    python benchmarks/lint_fidelity.py [--repo DIR ...] [--qa SERVER_CHECKOUT]

Without --repo it builds the repository from the test fixtures (one model per lint rule that has a Triton
text: tests/test_lint.py BREAKERS, plus configs Triton loads) and serves it on a real r24.10. Pass model
repositories of your own ($ENVTOOL_QA_REPOS, colon-separated) to measure those the same way.

--qa (or $ENVTOOL_TRITON_SERVER_SRC) takes a checkout of triton-inference-server/server and measures lint
against Triton's own QA verdicts (benchmarks/triton_qa.py lays the cases out in a temporary folder; no
server runs: each case's `expected` file is the text Triton's test greps for). It prints:
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


def measure_qa(server_src: Path, release: str | None, verbose: bool) -> None:
    """Triton's QA cases: lint's errors against the verdict each upstream test expects."""
    from benchmarks.triton_qa import all_cases
    with tempfile.TemporaryDirectory() as tmp:
        cases = all_cases(server_src, Path(tmp))
        rows = []
        for case in cases:
            findings = api.lint(case.repo, release, autocomplete=case.autocomplete)
            errors = [f for f in findings if f.severity == "error"]
            rows.append((case, errors))
        loads = [(c, e) for c, e in rows if c.expected is None]
        models = sum(len([p for p in c.repo.iterdir() if p.is_dir()]) for c, _ in loads)
    for static in (True, False):
        rejected = [(c, e) for c, e in rows if c.expected is not None and c.static == static]
        flagged = [(c, e) for c, e in rejected if e]
        texts = [(c, e) for c, e in flagged if any(f.triton and c.matches(f.triton) for f in e)]
        what = ("decided by the config (and model.py's presence)" if static else
                "decided at load by the model file's tensors, model.py's auto_complete_config or the server's "
                "installed backends")
        print(f"rejected, {what}: {len(rejected)}")
        print(f"  flagged: {len(flagged)}/{len(rejected)} ({_share(flagged, rejected)})")
        print(f"  with Triton's text: {len(texts)}/{len(flagged)} ({_share(texts, flagged)})")
        for c, _ in rejected:
            if (c, _) not in flagged and (static or verbose):
                print(f"    not flagged: {c.name}")
        for c, e in flagged:
            if (c, e) not in texts and (static or verbose):
                print(f"    other text: {c.name}: {[f.triton or f.rule for f in e][:2]} vs {c.expected}")
    errors = [(c, f) for c, e in loads for f in e]
    layout = [(c, f) for c, f in errors if c.name == "python_models" and f.rule in TEMPLATE_RULES]
    false = [(c, f) for c, f in errors if (c, f) not in layout]
    print(f"configs Triton loads: {models} models in {len(loads)} repositories")
    print(f"  false errors: {len(false)}")
    for c, f in false:
        print(f"    {c.name}: {f.model}: {f.rule}: {f.message}")
    print(f"  python_models templates their test scripts complete (rename, add model.py or the models an "
          f"ensemble calls): {len(layout)} layout errors, not counted")
    for _, f in layout:
        print(f"    {f.model}: {f.rule}: {f.message}")


# qa/python_models are templates: L0_backend_python's scripts copy them under other names, copy model.py
# from a sibling, and add the step models their ensembles run. On the raw templates these are expected.
TEMPLATE_RULES = {"name-mismatch", "ensemble-missing-model", "python-model-file"}


def _share(part: list, whole: list) -> str:
    return f"{len(part) / len(whole):.0%}" if whole else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", action="append", type=Path, default=[])
    ap.add_argument("--qa", type=Path, default=os.environ.get("ENVTOOL_TRITON_SERVER_SRC"),
                    help="a checkout of triton-inference-server/server (its qa/ folder is read)")
    ap.add_argument("--triton", default=None, help="the release whose message texts lint gives")
    ap.add_argument("--verbose", action="store_true", help="also list the cases decided at load")
    args = ap.parse_args()
    if args.qa:
        return measure_qa(args.qa, args.triton, args.verbose)
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
