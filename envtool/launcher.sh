#!/bin/sh
# envtool's stub launcher: the real triton_python_backend_stub is triton_python_backend_stub.elf beside it.
# Before every start Triton r22.11-r25.07 runs the stub with no arguments and no env applied, and chmods it to
# ---x------ unless that exits 1; on a read-only repository the model fails instead (python_backend
# src/stub_launcher.cc). The real stub cannot answer: its libpython is only inside the env, so the loader
# exits 127. Answer as the stub itself does without arguments (src/pb_stub.cc: exit 1), and run it otherwise.
[ "$#" -eq 0 ] && exit 1
case "$0" in */*) here=${0%/*} ;; *) here=. ;; esac
stub="$here/triton_python_backend_stub.elf"
# A repository fetched from object storage (S3, GCS, Azure) has lost its execute bits: Triton gives this
# launcher back its own, and the launcher the real stub's, as Triton does for a stub of its own.
[ -x "$stub" ] || chmod u+x "$stub" 2>/dev/null
exec "$stub" "$@"
