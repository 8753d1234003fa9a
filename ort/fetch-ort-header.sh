#!/bin/sh
# Fetch ONNX Runtime's C API header (onnxruntime_c_api.h) from Debian's libonnxruntime-dev
# package into a private folder, without touching the system's apt configuration or installing
# anything: apt-get gets its own source list, list and cache folders; the .deb is unpacked with
# dpkg -x. The header is never copied into the repository.
#
# The newest header is preferred: the suites are tried in order (default: experimental, which
# has C API version 24+ and so the allocation-free shape getter the plugin uses when it can, then
# sid and trixie); the first one whose package downloads is used. A header fetched before (in
# DEST_DIR/SUITE) is reused without network access, again in that order.
#
# usage: fetch-ort-header.sh DEST_DIR
#   LINATTN_ORT_DEBIAN_SUITE="SUITE ..." replaces the list of suites to try.
# On success prints the folder holding onnxruntime_c_api.h and exits 0; else exits non-zero.
# Progress and each suite's failure go to stderr.
set -eu

dest=${1:?usage: fetch-ort-header.sh DEST_DIR}
suites=${LINATTN_ORT_DEBIAN_SUITE:-experimental sid trixie}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

header_dir() { echo "$dest/$1/root/usr/include/onnxruntime"; }

for suite in $suites; do
  if [ -f "$(header_dir "$suite")/onnxruntime_c_api.h" ]; then
    echo "fetch-ort-header: using the header fetched before from $suite" >&2
    header_dir "$suite"
    exit 0
  fi
done

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

# Downloads libonnxruntime-dev from one suite into DEST_DIR/SUITE; 0 when its header is there.
fetch_suite() {
  suite=$1
  dir="$dest/$suite"
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
  echo "deb [signed-by=$keyring] $uri $suite main" > "$dir/sources.list"
  set -- -o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
         -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache" \
         -o "Dir::State::status=/dev/null" -o Debug::NoLocking=1 -o APT::Sandbox::User=root \
         -o Acquire::http::Timeout=30 -o Acquire::Retries=1 -q
  echo "fetch-ort-header: downloading libonnxruntime-dev ($suite) from $uri" >&2
  apt-get "$@" update >&2 || return 1
  rm -f "$dir"/libonnxruntime-dev_*.deb
  (cd "$dir" && apt-get "$@" download libonnxruntime-dev >&2) || return 1
  deb=$(ls "$dir"/libonnxruntime-dev_*.deb 2>/dev/null | head -n1)
  [ -n "$deb" ] || return 1
  dpkg -x "$deb" "$dir/root" || return 1
  [ -f "$(header_dir "$suite")/onnxruntime_c_api.h" ] || { echo "fetch-ort-header: $deb has no onnxruntime_c_api.h" >&2; return 1; }
  echo "fetch-ort-header: using $(basename "$deb") ($suite)" >&2
}

for suite in $suites; do
  if fetch_suite "$suite"; then
    header_dir "$suite"
    exit 0
  fi
  echo "fetch-ort-header: no header from $suite" >&2
done
echo "fetch-ort-header: download failed (tried: $suites)" >&2
exit 1
