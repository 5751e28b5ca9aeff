"""What the commands print for people (rich, on stdout; warnings, causes and progress on stderr) and the JSON
documents they print for machines. The CLI decides nothing here: each function renders one result."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from envtool import catalog, formats

# Piped or captured output is for machines and logs: never wrapped at 80 columns (rich's default off a TTY).
out = Console(width=None if sys.stdout.isatty() else 100_000)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 100_000)

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def with_progress(title: str, work):
    """Run work(log) under a rich spinner on stderr; each step is also printed as a line."""
    with err.status(title) as status:
        def log(msg: str) -> None:
            status.update(msg)
            err.print(f"  {msg}", highlight=False, style="dim")
        return work(log)


def warn(text: str) -> None:
    err.print(f"[yellow]warning:[/] {text}", highlight=False, soft_wrap=True)


def cell(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    if isinstance(v, dict):
        return ", ".join(f"{k}={x}" for k, x in v.items())
    return str(v)


def times(timings: dict[str, float]) -> str:
    """{"start_to_ready_s": 3.4} -> "start to ready 3.4 s"."""
    return ", ".join(f"{(k[:-2] if k.endswith('_s') else k).replace('_', ' ')} {v:.1f} s"
                     for k, v in timings.items())


# --- releases ----------------------------------------------------------------------------------

def release(r) -> None:
    t = Table(title=f"Triton {r.branch} (server {r.server})", show_header=False)
    for k, v in r.to_dict().items():
        for sub, sv in (v.items() if isinstance(v, dict) else [(None, v)]):
            t.add_row(f"{k}.{sub}" if sub else k, cell(sv))
    out.print(t)


def releases(rows: list[dict]) -> None:
    t = Table(title="Triton releases (python backend)")
    for col in ("release", "server", "ubuntu", "glibc", "GLIBCXX", "python", "pybind11",
                "boost", "numpy2", "dir env", "launcher", "pytriton", "prebuilt stubs"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["release"], r["server"], r["ubuntu"], r["glibc"], r["max_glibcxx"],
                  r["python"], r["pybind11"], r["boost"] + (" (dead URL)" if r["boost_dead"] else ""),
                  cell(r["numpy2"]), cell(r["dir_env"]),
                  r["launcher"] + (" + secure extract" if r["secure_extract"] else ""), r["pytriton"] or "-",
                  cell(r["prebuilt_pythons"]) or "-")
    out.print(t)


# --- findings (lint, doctor) ---------------------------------------------------------------------

def machine_findings(fmt: str, findings: list, as_json: dict) -> bool:
    """Writes findings in a machine format; False for text (the caller renders it)."""
    if fmt == "json":
        emit_json(as_json)
    elif fmt == "sarif":
        emit_json(formats.to_sarif(findings))
    elif fmt == "github" and findings:
        click.echo(formats.to_github(findings))
    return fmt != "text"


def finding(f) -> None:
    style = SEVERITY_STYLE[f.severity]
    out.print(f"[{style}]{f.severity}[/] [bold]{f.model or '-'}[/] {f.message}", highlight=False)
    if f.where:
        out.print(f"    at {f.where}", style="dim", highlight=False)
    if f.triton:
        out.print(f"    Triton says: {f.triton}", highlight=False)
    if f.fix:
        out.print(f"    fix: {f.fix}", style="green", highlight=False)


def lint(findings: list) -> None:
    for f in findings:
        finding(f)
    n_err = sum(f.severity == "error" for f in findings)
    summary = f"{len(findings)} finding(s), {n_err} error(s)" if findings else "no findings"
    out.print(("[red]✗[/] " if n_err else "[green]✓[/] ") + summary)


def doctor(report) -> None:
    for f in report.findings:
        finding(f)
    for i, d in enumerate(report.diagnoses):
        head = "[bold red]cause[/]" if i == 0 else "[yellow]also[/]"
        hang = " [bold](Triton waits forever)[/]" if d.hang else ""
        out.print(f"{head} [dim]{d.id}[/]{hang} {d.cause}\n    fix: {d.fix}", highlight=False)
        for e in d.evidence:
            out.print(f"    [dim]{e}[/]", highlight=False)
    if report.log is not None:
        v = report.log
        out.print(f"[dim]log: {v.lines} lines, {v.release.text()} ({v.release.how})[/]", highlight=False)
        if not v.recognised:
            out.print("nothing recognised: no Triton log line and no known error in it", highlight=False)
    n_err = sum(f.severity == "error" for f in report.findings) + len(report.diagnoses)
    out.print(("[red]✗[/] " if n_err else "[green]✓[/] ") + (f"{n_err} problem(s)" if n_err else "no problems"))


# --- inject, pack, stub, matrix ------------------------------------------------------------------

def inject(result, dry_run: bool) -> None:
    for e in result.errors:
        where = f" (at {e.where})" if e.where else ""
        err.print(f"[red]error:[/] {e.message}{where}" + (f"; fix: {e.fix}" if e.fix else ""), highlight=False,
                  soft_wrap=True)
    for w in result.warnings:
        warn(w)
    for p in result.files:
        out.print(("would " if dry_run else "") + p.describe(), highlight=False)
    for c in result.configs:
        if c.changed and dry_run:
            click.echo(c.diff(result.repo), nl=False)
        elif c.changed:
            out.print(f"edited {c.path}", highlight=False)
    state = "would change" if dry_run else "changed"
    out.print(f"[green]✓[/] {', '.join(result.models)}: " + (state if result.changed else "already up to date"))
    if result.errors:
        out.print(f"[red]✗[/] left out: {', '.join(e.model for e in result.errors)}")


def pack(result) -> None:
    m = result.manifest
    for w in m["warnings"]:
        warn(w)
    saved = f", trimmed {m['trimmed']['bytes'] / 2**20:.0f} MB" if m["trimmed"] else ""
    out.print(f"[green]✓[/] {result.output} ({m['size_bytes'] / 2**20:.1f} MB, {m['files']} files, Python "
              f"{m['python']}, numpy {m['numpy']}{saved}{', reused' if result.reused else ''})", highlight=False)
    out.print(f"  manifest: {result.manifest_path}", highlight=False)


def stubs(arts) -> None:
    for art in arts:
        m = art.manifest
        libs = f" + {', '.join(m['libs'])}" if m.get("libs") else ""
        out.print(f"[green]✓[/] {art.path}{libs}", highlight=False)
        out.print(f"  r{m['release']}, Python {m['python']}, {m['builder']}; links {m['needed_libpython']}; needs "
                  f"GLIBC {m['requires'].get('GLIBC')}, GLIBCXX {m['requires'].get('GLIBCXX')}", highlight=False)
        t = m.get("timings") or {}
        out.print(f"  chosen: {m['chosen']}{f' ({times(t)})' if t and not art.reused else ''}", highlight=False)


def matrix(cells, summary: str) -> None:
    t = Table(title="Triton release x Python")
    for col in ("cell", "status", "stub", "ELF fit", "served", "time", "why"):
        t.add_column(col, overflow="fold")
    for c in cells:
        t.add_row(f"r{c.release} x {c.python}", c.status, c.made or "-", c.elf, c.served,
                  f"{c.seconds:.1f} s" if c.seconds else "-", c.why or c.error or "")
    out.print(t)
    out.print(summary, highlight=False)


# --- verify, serve, build ------------------------------------------------------------------------

def verify(report) -> None:
    t = Table(title=f"Triton r{report.release} ({report.server['kind']} {report.server.get('version', '')})")
    for col in ("model", "state", "checked", "inference", "outputs"):
        t.add_column(col)
    runs: dict[str, list] = {}
    for i in report.inferences:
        runs.setdefault(i.model, []).append(i)
    for name, st in sorted(report.models.items()):
        ready = st["state"] == "READY"
        state = f"[green]{st['state']}[/]" if ready else f"[red]{st['state'] or '-'}[/] {st['reason']}"
        inf = " ".join(f"{i.protocol} {'[green]ok[/]' if i.ok else '[red]failed[/]'}"
                       + ("" if i.responses is None else f" ({i.responses} response{'s' * (i.responses != 1)})")
                       for i in runs.get(name, []))
        outs = next((", ".join(f"{k} {v['datatype']}{v['shape']} {_sample(v['sample'])}"
                               for k, v in i.outputs.items())
                     for i in runs.get(name, []) if i.outputs), "")
        checked = st.get("checked", "")
        t.add_row(name, state, "[yellow]not exercised[/]" if checked.startswith("skipped") else checked, inf, outs)
    if report.models:
        out.print(t)
    for d in report.diagnoses:
        err.print(f"[bold red]cause:[/] {d.cause}\n  [bold]fix:[/] {d.fix}\n  [dim]log: {d.line}[/]",
                  highlight=False, soft_wrap=True)
    for w in report.warnings:
        warn(w)
    for p in report.problems:
        err.print(f"[bold red]✗[/] {p.message}" + (f"\n  [bold]fix:[/] {p.fix}" if p.fix else ""), highlight=False,
                  soft_wrap=True)
    if not report.reused:
        out.print(f"server log: {report.server['log']} ({times(report.timings)})", highlight=False)
    for sk in report.skipped:
        err.print(f"[yellow]not exercised:[/] {sk['model']}: {sk['reason']}", highlight=False, soft_wrap=True)
    if report.ok:
        _verified(report)


def _verified(report) -> None:
    exercised = sum(st.get("checked", "").startswith(("inference", "grpc", "via"))
                    for st in report.models.values())
    what = f"verified ({exercised} exercised, {len(report.skipped)} not exercised)"
    if report.reused:
        what = (f"verified earlier (lock unchanged: served {report.reused}, {exercised} exercised); "
                "--reverify serves it again")
    out.print(f"[green]✓[/] {what}" + (f"; lock: {report.lock}" if report.lock else ""), highlight=False)


def _sample(values: list) -> str:
    shown = [f"{v:.4g}" if isinstance(v, float) else str(v)[:24] for v in values]
    return "= [" + ", ".join(shown) + (", …]" if len(values) >= 4 else "]")


def endpoints(server) -> None:
    states = server.model_states()
    ready = sorted(n for n, s in states.items() if s["state"] == "READY")
    bad = {n: s for n, s in states.items() if s["state"] != "READY"}
    out.print(f"[green]serving[/] {server.repo} with Triton r{server.release.release} ({server.kind})",
              highlight=False)
    out.print(f"  HTTP    {server.url}\n  gRPC    {server.grpc_url}\n  metrics http://{server.grpc_url.split(':')[0]}:"
              f"{server.metrics_port}/metrics\n  log     {server.log_path}", highlight=False)
    out.print(f"  ready: {', '.join(ready) or 'none'}", highlight=False)
    for n, s in sorted(bad.items()):
        err.print(f"  [red]{n}[/] {s['state']}: {s['reason']}", highlight=False, soft_wrap=True)
    out.print("Ctrl-C to stop.")


def build(result) -> None:
    s, e = result.stub, result.env
    out.print(f"[green]✓[/] stub {s.path} ({s.manifest['builder']}{', reused' if s.reused else ''})",
              highlight=False)
    out.print(f"[green]✓[/] env  {e.output} (Python {e.manifest['python']}, numpy {e.manifest['numpy']}, "
              f"{e.manifest['size_bytes'] / 2**20:.1f} MB{', reused' if e.reused else ''})", highlight=False)
    for w in e.manifest["warnings"]:
        warn(w)
    if e.manifest.get("format") == "tar.gz" and getattr(catalog.by_name(s.manifest["release"]), "dir_env", False):
        out.print("[dim]tip: this release also loads an env as a directory (--unpacked): no extraction at each "
                  "server start, for a repository on a local or mounted disk (README: directory envs)[/]",
                  highlight=False)
    if result.inject is not None:
        state = "changed" if result.inject.changed else "already up to date"
        out.print(f"[green]✓[/] injected into {', '.join(result.inject.models)} ({state})", highlight=False)
    else:
        out.print(f"next: envtool inject REPO --stub {s.path} --env {e.output}", highlight=False)
    if result.verify is not None:
        verify(result.verify)
    out.print(f"steps: {times(result.timings)}", highlight=False)


def image(result) -> None:
    if result.context:
        out.print(f"[green]✓[/] build context {result.context}: `docker build -t {result.tag} "
                  f"{result.context}` or `docker buildx bake -f {result.context}/docker-bake.hcl`",
                  highlight=False)
        return
    if result.verify is not None:
        verify(result.verify)
    layers = ", ".join(f"{x['layer']} {x['bytes'] / 2**20:.1f} MB{' (reused)' if x['reused'] else ''}"
                       for x in result.layers)
    mark = "[green]✓[/]" if result.ok else "[red]✗[/]"
    out.print(f"{mark} image {result.tag} {result.image_id[7:19]} from {result.base_image} in "
              f"{result.build_seconds} s: {layers}", highlight=False)
    if result.pushed:
        out.print(f"[green]✓[/] pushed {result.pushed['ref']} {result.pushed['digest'] or ''}", highlight=False)
