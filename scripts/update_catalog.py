#!/usr/bin/env python3
"""Regenerate envtool/catalog/releases.toml from the fact sheets.

Inputs:
  --releases  the per-release research table (shared/RELEASES.md: server, OS, recipe, pytriton)
  --wheels    a folder of nvidia-pytriton wheels; the Pythons of their prebuilt stubs are read
              from the wheels themselves (python_backend_stubs/3.X/), so that column is measured.

Usage: python scripts/update_catalog.py --releases ../shared/RELEASES.md --wheels ~/.cache/envtool/wheels
"""

from __future__ import annotations

import argparse
import re
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "envtool" / "catalog" / "releases.toml"

BOOST_SHA256 = {
    "1.76.0": "7bd7ddceec1a1dfdcbdb3e609b60d01739c38390a5f956385a12f3122049f0ca",
    "1.79.0": "273f1be93238a068aba4f9735a4a2b003019af067b9c183ed227780b8f36062c",
    "1.80.0": "4b2136f98bdd1f5857f1c3dea9ac2018effe65286cf251534b6ae20cc45e1847",
}
BOOST_HOSTS = {
    "boostorg.jfrog.io": "https://boostorg.jfrog.io/artifactory/main/release/{v}/source/boost_{u}.tar.gz",
    "archives.boost.io": "https://archives.boost.io/release/{v}/source/boost_{u}.tar.gz",
}
PYBIND11 = {  # pin as written in CMakeLists -> (resolved version, Pythons it builds a stub for)
    '"v2.6" (branch)': ("v2.6", "2.6.2", ["3.8", "3.9", "3.10"]),
    '"v2.10" (branch)': ("v2.10", "2.10.4", ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]),
    "aa304c9c7d… (= v2.10.0)": ("aa304c9c7d725ffb9d10af08a3b34cb372307020", "2.10.0",
                                ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]),
    "3e9dfa2866… (= v2.12.0)": ("3e9dfa2866941655c56877882565e7577de6fc7b", "2.12.0",
                                ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]),
}
# Measured: r22.11's python_backend does not compile with GCC >= 12 without it (KNOWLEDGE.md 2).
CXX_FLAGS_NEW_GCC = {"22.11": ["-includefunctional"]}

SOURCES = {
    "server": "server repo `git show rYY.MM:TRITON_VERSION` (r25.07 also build.py)",
    "ubuntu": "server build.py per branch (DCGM repo path / CPU base image); Dockerfile.sdk agrees",
    "default_python": "server qa/L0_backend_python env/test.sh and test.sh; python_backend README; "
    "24.12 release notes; server docs/introduction/compatibility.md (r26.08)",
    "glibc": "Ubuntu release defaults (20.04: 2.31, 22.04: 2.35, 24.04: 2.39)",
    "max_glibcxx": "libstdc++6 of the Ubuntu release: gcc-10 (3.4.28), 12.3 (3.4.30), "
    "noble gcc-14 runtime (3.4.33; gcc.gnu.org libstdc++ 2024-April/058588)",
    "cuda": "NVIDIA Triton release notes, 'Release YY.MM is based on ...' ('' = not found)",
    "images": "NGC tag scheme nvcr.io/nvidia/tritonserver:<yy.mm>-<variant>; -cpu-only-py3 is "
    "named by our issue #2 and not confirmed on NGC",
    "recipe.boost": "python_backend rYY.MM CMakeLists.txt ExternalProject boostorg URL + URL_HASH",
    "recipe.boost_url_dead": "boostorg/boost #997, #1042; GafferHQ/dependencies PR #272",
    "recipe.boost_sha256": "python_backend CMakeLists URL_HASH; archives.boost.io serves the same "
    "bytes (Homebrew formula for 1.76.0; r23.12->r24.01 only changed the host)",
    "recipe.pybind11": "python_backend CMakeLists FetchContent GIT_TAG; tags resolved in pybind/pybind11",
    "recipe.pybind11_pythons": "v2.6: no Python >= 3.11 (server #5110, PyFrameObject); v2.10+: "
    "nvidia-pytriton builds stubs for 3.8-3.13 with it (wheels inspected)",
    "recipe.dlpack": "python_backend CMakeLists FetchContent GIT_TAG",
    "recipe.cmake_min": "python_backend CMakeLists cmake_minimum_required",
    "recipe.cmake_min_effective": "max cmake_minimum_required of python_backend, common, "
    "common/src/test, core, backend on the same branch",
    "recipe.googletest": "common rYY.MM src/CMakeLists.txt add_subdirectory(test) (FetchContent googletest)",
    "recipe.cxx_flags_new_gcc": "measured here: r22.11 shm_manager.h 'function' is not a member "
    "of 'std' with GCC 12",
    "recipe.override_vars": "python_backend CMakeLists cache variables",
    "numpy2": "pybind11 >= 2.12 (python_backend PR #384, first in r24.11); server issue #8301",
    "dir_env": "python_backend src/pb_env.cc S_ISDIR branch, PR #266 (first in r23.07)",
    "launcher": "python_backend src/stub_launcher.cc + src/pb_utils.cc: `source bin/activate && exec env "
                "LD_LIBRARY_PATH=...` up to r25.07; ParseActivationScript (VIRTUAL_ENV, PATH, LD_LIBRARY_PATH, no "
                "PYTHONHOME; activate not sourced) from r25.08. The stub probe goes with it: `system(stub)` with "
                "no arguments, chmod S_IXUSR unless it exits 1, up to r25.07; IsExecutableFile (a mode check) "
                "from r25.08",
    "secure_extract": "python_backend src/pb_env.cc archive_write_disk_set_options(ARCHIVE_EXTRACT_SECURE_NODOTDOT"
                      " | SECURE_NOABSOLUTEPATHS | SECURE_SYMLINKS), first in r26.06",
    "pytriton": "pytriton tags: Makefile TRITONSERVER_IMAGE_VERSION and CHANGELOG",
    "pytriton_stub_pythons": "measured: python_backend_stubs/3.X/ folders inside each wheel "
    "(0.1.x/0.2.x: one stub in backends/python with a bundled libpython 3.8)",
    "manylinux": "pytriton wheel platform tags",
}


def parse_table(text: str) -> list[dict[str, str]]:
    rows = []
    header: list[str] | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None if not line.strip() else header
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not set(line) <= set("|- "):
            rows.append(dict(zip(header, cells)))
    return rows


def pytriton_map(rows: list[dict[str, str]]) -> dict[str, list[str]]:
    """release -> pytriton versions, from the main table's last column."""
    out: dict[str, list[str]] = {}
    for r in rows:
        cell = r.get("nvidia-pytriton embedding this server", "")
        versions = re.findall(r"\d+\.\d+\.\d+", cell)
        if "–" in cell and len(versions) == 2:  # a range such as 0.1.0–0.1.5
            a, b = versions
            major_minor = a.rsplit(".", 1)[0]
            versions = [f"{major_minor}.{p}" for p in range(int(a.split(".")[2]),
                                                             int(b.split(".")[2]) + 1)]
        out[r["branch"].lstrip("r")] = versions
    return out


def wheel_pythons(wheels: Path | None) -> dict[str, list[str]]:
    """pytriton version -> Pythons of the stubs inside its wheel (only wheels present)."""
    found: dict[str, list[str]] = {}
    if not wheels:
        return found
    for w in sorted(wheels.glob("nvidia_pytriton-*.whl")):
        version = w.name.split("-")[1]
        names = zipfile.ZipFile(w).namelist()
        pys = {m.group(1) for n in names if (m := re.search(r"python_backend_stubs/(3\.\d+)/", n))}
        if not pys and any(re.search(r"libpython3-\w+\.8\.so", n) for n in names):
            pys = {"3.8"}
        found[version] = sorted(pys, key=lambda v: int(v.split(".")[1]))
    return found


def q(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(q(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def version_key(rel: str) -> tuple[int, ...]:
    return tuple(int(x) for x in rel.split("."))


def release_entry(r: dict[str, str], pyt: list[str], stubs: dict[str, list[str]]) -> str | None:
    rel = r["branch"].lstrip("r")
    if not r.get("Boost + host"):
        return None  # no python_backend branch: nothing to build a stub from
    glibc, glibcxx = (x.strip() for x in r["glibc / max GLIBCXX"].split("/"))
    cm = re.findall(r"\d+\.\d+(?:\.\d+)?", r["pb cmake_min / effective min (pb+common+common/test+core+backend)"])
    bver, host = r["Boost + host"].split()[:2]
    pin, pb_version, pb_pys = PYBIND11[r["pybind11 GIT_TAG"]]
    measured = [stubs[v] for v in pyt if v in stubs]
    lines = [
        "[[release]]",
        f"release = {q(rel)}",
        f"server = {q(r['server (TRITON_VERSION)'])}",
        f"ubuntu = {q(r['Ubuntu'])}",
        f"glibc = {q(glibc)}",
        f"max_glibcxx = {q(glibcxx)}",
        f"default_python = {q(r['Python'])}",
        f"cuda = {q('' if r['CUDA (rel. notes)'] == 'n/f' else r['CUDA (rel. notes)'])}",
        f"numpy2 = {q(r['stub numpy-2 OK (pybind11>=2.12)'] == 'yes')}",
        f"dir_env = {q(r['dir as EXECUTION_ENV_PATH'] == 'yes')}",
        f"launcher = {q('parsed' if version_key(rel) >= (25, 8) else 'activate')}",
        f"secure_extract = {q(version_key(rel) >= (26, 6))}",
        f"pytriton = {q(pyt)}",
        f"pytriton_stub_pythons = {q(measured[-1] if measured else [])}",
        "[release.recipe]",
        f"boost = {q(bver)}",
        f"boost_url = {q(BOOST_HOSTS[host].format(v=bver, u=bver.replace('.', '_')))}",
        f"boost_url_dead = {q('DEAD' in r['Boost + host'])}",
        f"boost_sha256 = {q(BOOST_SHA256[bver])}",
        f"pybind11 = {q(pin)}",
        f"pybind11_version = {q(pb_version)}",
        f"pybind11_pythons = {q(pb_pys)}",
        f"dlpack = {q(r['dlpack'])}",
        f"cmake_min = {q(cm[0])}",
        f"cmake_min_effective = {q(cm[1])}",
        f"googletest = {q(r['common adds googletest tests'].startswith('yes'))}",
        f"cxx_flags_new_gcc = {q(CXX_FLAGS_NEW_GCC.get(rel, []))}",
        f"override_vars = {q(r['override vars'].split())}",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--releases", type=Path, required=True)
    ap.add_argument("--wheels", type=Path)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    rows = [r for r in parse_table(a.releases.read_text()) if r.get("branch", "").startswith("r")]
    pyt = pytriton_map(rows)
    stubs = wheel_pythons(a.wheels)
    head = [
        "# Triton release catalog: one entry per release. GENERATED by scripts/update_catalog.py;",
        "# edit the inputs (RELEASES.md, the wheels), not this file. Sources per field: [sources].",
        "",
        "[images]  # NGC image names per variant; {release} is yy.mm",
        'py3 = "nvcr.io/nvidia/tritonserver:{release}-py3"',
        'py3_min = "nvcr.io/nvidia/tritonserver:{release}-py3-min"',
        'pyt_python = "nvcr.io/nvidia/tritonserver:{release}-pyt-python-py3"',
        'cpu_only = "nvcr.io/nvidia/tritonserver:{release}-cpu-only-py3"',
        "",
        "[sources]",
        *(f"{q(k)} = {q(v)}" for k, v in SOURCES.items()),
        "",
    ]
    body = [e for r in rows if (e := release_entry(r, pyt.get(r["branch"].lstrip("r"), []), stubs))]
    a.out.write_text("\n".join(head) + "\n" + "\n\n".join(body) + "\n")
    print(f"wrote {len(body)} releases to {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
