#!/bin/sh
# Runs inside Dockerfile.build's builder stage: the same envtool commands as on a host.
#   install-deps     a venv for envtool (needs Python >= 3.10 in the image) with its dependencies
#   install-envtool  envtool itself into that venv
#   build            /out/stubs (the stub store), /out/envs/custom_env.tar.gz + manifest, stub.json, pack.json
set -eu
VENV=/opt/envtool
E="$VENV/bin/envtool"
CA=/opt/envtool-src/.envtool-ca.pem
if [ -f "$CA" ]; then
    export PIP_CERT="$CA" SSL_CERT_FILE="$CA" REQUESTS_CA_BUNDLE="$CA" GIT_SSL_CAINFO="$CA"
fi

pick_python() {
    for p in python3 python3.13 python3.12 python3.11 python3.10; do
        if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null
        then echo "$p"; return 0; fi
    done
    return 1
}

ensure_python() {  # the env's Python X.Y with a shared libpython: the image's, else uv's (needs network)
    if "$VENV/bin/python" -c "from envtool.env.interpreters import find_interpreter as f; f('$1')" 2>/dev/null
    then return 0; fi
    echo "envtool: no CPython $1 with a shared libpython in the image; trying uv python install $1" >&2
    "$VENV/bin/pip" install -q uv && "$VENV/bin/uv" python install "$1"
}

ensure_conda() {  # micromamba for environment.yml, where the network allows
    command -v micromamba >/dev/null 2>&1 || command -v mamba >/dev/null 2>&1 || \
        command -v conda >/dev/null 2>&1 && return 0
    "$VENV/bin/python" - <<'PY'
import io, tarfile, urllib.request
data = urllib.request.urlopen("https://micro.mamba.pm/api/micromamba/linux-64/latest", timeout=120).read()
with tarfile.open(fileobj=io.BytesIO(data), mode="r:bz2") as t:
    m = t.getmember("bin/micromamba")
    m.name = "micromamba"
    t.extract(m, "/usr/local/bin")
PY
}

case "$1" in
install-deps)
    PY=$(pick_python) || { echo "envtool needs Python >= 3.10 in the image (e.g. apt-get install python3.10 python3.10-venv)" >&2; exit 2; }
    "$PY" -m venv "$VENV"
    # pyproject.toml without the package: pip installs only the dependencies.
    "$VENV/bin/pip" install -q /opt/envtool-src
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
        set --
        [ "${GPU:-0}" = 1 ] && set -- --gpu
        "$E" stub --triton "$TRITON" --python "$PYTHON" --builder local --sources "$SRC" --cache /out/stubs \
            "$@" --json > /out/stub.json
    fi
    if [ "${ONLY:-}" != stub ]; then
        if [ -f /in/environment.yml ]; then
            ensure_conda
            "$E" pack --env-file /in/environment.yml --triton "$TRITON" -o /out/envs/custom_env.tar.gz \
                --json > /out/pack.json
        else
            ensure_python "$PYTHON"
            set --
            [ -f /in/requirements.txt ] && set -- -r /in/requirements.txt
            for r in ${REQUIREMENTS:-}; do set -- "$@" --pip "$r"; done
            "$E" pack --python "$PYTHON" --triton "$TRITON" "$@" -o /out/envs/custom_env.tar.gz --json > /out/pack.json
        fi
    fi
    ;;
*)
    echo "usage: artifacts.sh install-deps|install-envtool|build" >&2; exit 2
    ;;
esac
