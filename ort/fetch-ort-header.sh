#!/bin/sh
# Fetch ONNX Runtime's C API header (onnxruntime_c_api.h) from Debian trixie's
# libonnxruntime-dev package into a private folder, without touching the system's apt
# configuration or installing anything: apt-get gets its own source list, list and cache
# folders; the .deb is unpacked with dpkg -x. The header is never copied into the repository.
#
# usage: fetch-ort-header.sh DEST_DIR
# On success prints the folder holding onnxruntime_c_api.h and exits 0; else exits non-zero.
set -eu

dest=${1:?usage: fetch-ort-header.sh DEST_DIR}
suite=${LINATTN_ORT_DEBIAN_SUITE:-trixie}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
inc="$dest/root/usr/include/onnxruntime"

if [ -f "$inc/onnxruntime_c_api.h" ]; then
  echo "$inc"
  exit 0
fi

for tool in apt-get dpkg; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "fetch-ort-header: $tool not found (not a Debian-like system)" >&2
    exit 1
  fi
done

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
if [ ! -f "$keyring" ]; then
  echo "fetch-ort-header: $keyring missing (apt-get install debian-archive-keyring)" >&2
  exit 1
fi

# Reuse the Debian mirror the system's own apt sources name (the only one reachable here).
uri=$(grep -h -E '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources 2>/dev/null |
      grep -oE 'https?://[^ ]+/debian' | head -n1 || true)
[ -n "$uri" ] || uri=http://deb.debian.org/debian

mkdir -p "$dest/lists/partial" "$dest/cache/archives/partial"
echo "deb [signed-by=$keyring] $uri $suite main" > "$dest/sources.list"

set -- -o "Dir::Etc::SourceList=$dest/sources.list" -o Dir::Etc::SourceParts=/dev/null \
       -o "Dir::State::Lists=$dest/lists" -o "Dir::Cache=$dest/cache" \
       -o "Dir::State::status=/dev/null" -o Debug::NoLocking=1 -o APT::Sandbox::User=root \
       -o Acquire::http::Timeout=30 -o Acquire::Retries=1 -q

echo "fetch-ort-header: downloading libonnxruntime-dev ($suite) from $uri" >&2
apt-get "$@" update >&2
rm -f "$dest"/libonnxruntime-dev_*.deb
(cd "$dest" && apt-get "$@" download libonnxruntime-dev >&2)
deb=$(ls "$dest"/libonnxruntime-dev_*.deb 2>/dev/null | head -n1)
[ -n "$deb" ] || { echo "fetch-ort-header: download failed" >&2; exit 1; }
dpkg -x "$deb" "$dest/root"

if [ ! -f "$inc/onnxruntime_c_api.h" ]; then
  echo "fetch-ort-header: $deb has no onnxruntime_c_api.h" >&2
  exit 1
fi
echo "$inc"
