#!/bin/sh
# Runs inside Dockerfile.build's builder stage: the same envtool commands as on a host, in any release
# image (NGC -py3 / -py3-min, Ubuntu 20.04 with Python 3.8 included, or a stand-in with the release's glibc).
#   install-deps     what the build needs from the image's apt (where the network allows; else one line naming
#                    what is missing and the apt line), then a venv for envtool (Python >= 3.8) with its deps
#   install-envtool  envtool itself into that venv
#   build            /out/stubs (the stub store), /out/envs/custom_env.tar.gz + manifest, stub.json, pack.json
set -eu
VENV=/opt/envtool
E="$VENV/bin/envtool"
CA=/opt/envtool-src/.envtool-ca.pem
if [ -f "$CA" ]; then
    export PIP_CERT="$CA" SSL_CERT_FILE="$CA" REQUESTS_CA_BUNDLE="$CA" GIT_SSL_CAINFO="$CA"
fi
export DEBIAN_FRONTEND=noninteractive

fail() { echo "envtool: $*" >&2; exit 2; }

pick_python() {
    for p in python3 python3.13 python3.12 python3.11 python3.10 python3.9 python3.8; do
        if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 8))' 2>/dev/null
        then echo "$p"; return 0; fi
    done
    return 1
}

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }

APT_UPDATED=
apt_install() {  # apt_install WHY PKG...: the packages not yet installed, or one line naming them
    why=$1; shift
    missing=
    for p in "$@"; do have_pkg "$p" || missing="$missing $p"; done
    [ -z "$missing" ] && return 0
    command -v apt-get >/dev/null 2>&1 || fail "$why needs$missing and this image has no apt-get; use a base image that has them"
    if [ -z "$APT_UPDATED" ]; then
        apt-get update -q >/tmp/apt-update.log 2>&1 || true
        APT_UPDATED=1
    fi
    for p in $missing; do
        apt-cache show "$p" >/dev/null 2>&1 || fail "$why needs $p, which this image's apt sources do not have (not in its distro, or no network); fix: a base image with it, or apt-get install$missing where the network allows"
    done
    echo "envtool: apt-get install$missing ($why)" >&2
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >/tmp/apt-install.log 2>&1 || \
        fail "apt-get install$missing failed ($why): $(tail -n 2 /tmp/apt-install.log | tr '\n' ' ')"
    rm -rf /var/lib/apt/lists/*
    APT_UPDATED=
}

distutils_pkg() {  # Debian/Ubuntu split distutils out of the stdlib: python3-distutils or python3.X-distutils
    xy=$1
    if [ "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$xy" ]; then
        echo python3-distutils
    else
        echo "python$xy-distutils"
    fi
}

python_pkgs() {  # the apt packages of a Python X.Y that envtool can pack (and, with dev, build a stub for)
    xy=$1
    pkgs="python$xy libpython$xy python$xy-venv"
    # Python < 3.10: pip uses distutils. From 3.12 there is no distutils at all.
    case "$xy" in 3.8|3.9|3.10|3.11) pkgs="$pkgs $(distutils_pkg "$xy")";; esac
    [ "${2:-}" = dev ] && pkgs="$pkgs python$xy-dev"
    echo "$pkgs"
}

python_ready() {  # python X.Y already usable for a stub build: Python.h and libpython3.X.so.1.0
    command -v "python$1" >/dev/null 2>&1 && "python$1" - "$1" <<'PY' 2>/dev/null
import os, sys, sysconfig
inc = os.path.join(sysconfig.get_paths()["include"], "Python.h")
lib = [os.path.join(d, "libpython%s.so.1.0" % sys.argv[1]) for d in
       (sysconfig.get_config_var("LIBDIR") or "", os.path.join(sysconfig.get_config_var("LIBDIR") or "",
        sysconfig.get_config_var("MULTIARCH") or ""))]
sys.exit(not (os.path.isfile(inc) and any(os.path.isfile(p) for p in lib)))
PY
}

ensure_python() {  # the env's Python X.Y with libpython: the image's or apt's (install-deps), else uv's
    if "$VENV/bin/python" -c "from envtool.env.interpreters import find_interpreter as f; f('$1')" 2>/dev/null
    then return 0; fi
    echo "envtool: no CPython $1 with libpython in the image; trying uv python install $1" >&2
    # uv pinned with its digests (envtool/catalog/downloads.toml)
    "$VENV/bin/python" -c "from envtool.catalog.downloads import require_hashes_line as r; print(r('uv'))" \
        > /tmp/envtool-uv.txt && "$VENV/bin/pip" install -q --require-hashes -r /tmp/envtool-uv.txt && \
        rm -f /tmp/envtool-uv.txt && "$VENV/bin/uv" python install "$1"
}

ensure_conda() {  # micromamba for environment.yml, where the network allows
    command -v micromamba >/dev/null 2>&1 || command -v mamba >/dev/null 2>&1 || \
        command -v conda >/dev/null 2>&1 && return 0
    # a pinned version, refused unless its sha256 matches (envtool/catalog/downloads.toml)
    "$VENV/bin/python" -m envtool.catalog.downloads micromamba /usr/local/bin/micromamba
}

case "$1" in
install-deps)
    # One layer for the stub and the env builds of a Python (keyed by PYTHON only, so `envtool build` makes it
    # once): the python_backend build's compiler, git and headers (cmake comes from PyPI when the image's is
    # older than the release's recipe needs), and the target Python X.Y with libpython, -dev, -venv, distutils.
    if command -v dpkg-query >/dev/null 2>&1; then
        PYPKGS=
        python_ready "$PYTHON" || PYPKGS=$(python_pkgs "$PYTHON" dev)
        # shellcheck disable=SC2086
        # googletest: common fetches it from r23.04 on; the build uses Debian/Ubuntu's /usr/src/googletest offline
        apt_install "the stub build for Python $PYTHON" g++ make git ca-certificates rapidjson-dev libarchive-dev \
            zlib1g-dev libboost-dev googletest $PYPKGS
    fi
    if ! PY=$(pick_python); then
        command -v apt-get >/dev/null 2>&1 && apt_install "envtool" python3 python3-venv
        PY=$(pick_python) || fail "envtool needs Python >= 3.8 in the image (apt-get install python3 python3-venv)"
    fi
    XY=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1 || ! "$PY" -m venv /tmp/venv-probe >/dev/null 2>&1; then
        # shellcheck disable=SC2046
        apt_install "envtool's venv" $(python_pkgs "$XY")
    fi
    rm -rf /tmp/venv-probe
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade "pip>=21" || fail "pip could not be upgraded (no network to PyPI?)"
    # pyproject.toml without the package: pip installs only the dependencies.
    # --prefer-binary: an older wheel over compiling (gevent, under tritonclient[http]) without Python.h
    # tritonclient pins grpcio < 1.68, which has no wheel for Python >= 3.14 (compiling it takes ~20 min on 2
    # cores; pip backtracking through older tritonclients builds numpy sdists). Probe for the wheel first.
    if "$VENV/bin/pip" download -q --no-deps --only-binary :all: -d /tmp/grpcio-probe "grpcio>=1.63,<1.68" \
        >/dev/null 2>&1; then
        rm -rf /tmp/grpcio-probe
        "$VENV/bin/pip" install -q --prefer-binary /opt/envtool-src
    else
        # envtool in the build image never opens a gRPC connection: uv lets a newer grpcio in.
        echo "envtool: no grpcio < 1.68 wheel for Python $XY; installing envtool's deps with uv and grpcio >= 1.68" >&2
        "$VENV/bin/pip" install -q uv || fail "pip could not install uv (no network to PyPI?)"
        echo "grpcio>=1.68" > /tmp/envtool-overrides.txt
        "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --override /tmp/envtool-overrides.txt \
            /opt/envtool-src || fail "envtool's dependencies could not be installed: see the docker build log"
    fi
    ;;
install-envtool)
    "$VENV/bin/pip" install -q --no-deps --force-reinstall /opt/envtool-src
    ;;
build)
    mkdir -p /out
    if [ "${ONLY:-}" != env ]; then
        ensure_python "$PYTHON"
        if [ -d /in/sources/python_backend ]; then SRC=/in/sources
        else SRC=/tmp/sources; "$E" stub --triton "$TRITON" --fetch-sources "$SRC"; fi
        set -- --target "${TARGET:-release}"
        [ "${GPU:-0}" = 1 ] && set -- "$@" --gpu
        [ -n "${PYBIND11:-}" ] && set -- "$@" --pybind11 "$PYBIND11"
        "$E" stub --triton "$TRITON" --python "$PYTHON" --builder local --sources "$SRC" --cache /out/stubs \
            "$@" --json > /out/stub.json
    fi
    if [ "${ONLY:-}" != stub ]; then
        if [ -f /in/environment.yml ]; then
            ensure_conda
            "$E" pack --env-file /in/environment.yml --triton "$TRITON" --target "${TARGET:-release}" -o /out/envs/custom_env.tar.gz \
                --json > /out/pack.json
        else
            ensure_python "$PYTHON"
            set -- --target "${TARGET:-release}"
            [ -f /in/requirements.txt ] && set -- "$@" -r /in/requirements.txt
            for r in ${REQUIREMENTS:-}; do set -- "$@" --pip "$r"; done
            # numpy follows the stub's pybind11: a --pybind11 >= v2.12 stub reads numpy 2 (NUMPY2=1)
            [ "${NUMPY2:-0}" = 1 ] && set -- "$@" --numpy2
            [ "${KEEP_SOURCES:-0}" = 1 ] && set -- "$@" --keep-sources
            "$E" pack --python "$PYTHON" --triton "$TRITON" "$@" -o /out/envs/custom_env.tar.gz --json > /out/pack.json
        fi
    fi
    ;;
*)
    echo "usage: artifacts.sh install-deps|install-envtool|build" >&2; exit 2
    ;;
esac
