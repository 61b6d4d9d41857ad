#!/usr/bin/env bash
# Obtain a pinned mediasoup-worker and copy it to OUT (default: bin/mediasoup-worker).
#
#   third_party/mediasoup-worker/build.sh [OUT]
#
# Order:
#  1. MEDIASOUP_WORKER_BIN, when set, is used as it is (no build).
#  2. The cache: $MEDIASOUP_WORKER_CACHE (default ~/.cache/mediasoup-server/worker),
#     keyed by version + a hash of this recipe, so a change to the recipe rebuilds.
#  3. The official prebuilt release, only when its URL and SHA-256 are pinned below
#     (a machine without internet skips it after a short timeout).
#  4. A build from the mediasoup npm tarball's C++ sources against Debian's
#     libraries (about 7 minutes on 2 cores), with the edits of patch.py.
set -euo pipefail

VERSION=3.26.0
# `npm view mediasoup@3.26.0 dist.integrity`
INTEGRITY='sha512-DO/alh4DU54FlCp7GkrEVqdJ1kDPJEjiieUsXDfXNhlYS7A3TEcp5+iXL0JKaoOmxNI+mNjYu3pT7Doa1MDIPg=='
# Official prebuilt worker. Leave the checksum empty until it has been verified
# from a machine that can download it: an unpinned binary is never used.
PREBUILT_URL="https://github.com/versatica/mediasoup/releases/download/${VERSION}/mediasoup-worker-${VERSION}-linux-x64-kernel6.tgz"
PREBUILT_SHA256="${MEDIASOUP_WORKER_PREBUILT_SHA256:-}"

APT_PACKAGES=(meson ninja-build pkg-config build-essential python3 libuv1-dev libssl-dev
	libsrtp2-dev libabsl-dev libflatbuffers-dev flatbuffers-compiler)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-bin/mediasoup-worker}
log() { echo "worker: $*" >&2; }
die() { echo "worker: ERROR: $*" >&2; exit 1; }

install_out() {
	mkdir -p "$(dirname "$out")"
	if [ "$(readlink -f "$1")" != "$(readlink -f "$out" 2>/dev/null || true)" ]; then
		cp -f "$1" "$out.tmp.$$" && mv -f "$out.tmp.$$" "$out"
	fi
	ldd "$out" 2>/dev/null | grep -q 'not found' && die "$out misses shared libraries: $(ldd "$out" | grep 'not found' | tr -s ' \t' ' ')"
	log "ready: $out ($VERSION)"
}

if [ -n "${MEDIASOUP_WORKER_BIN:-}" ]; then
	[ -x "$MEDIASOUP_WORKER_BIN" ] || die "MEDIASOUP_WORKER_BIN=$MEDIASOUP_WORKER_BIN is not an executable file"
	install_out "$MEDIASOUP_WORKER_BIN"
	exit 0
fi

recipe_hash=$(cat "$here/build.sh" "$here/patch.py" "$here/compat/srtp.h" "$here/compat/ankerl/unordered_dense.h" |
	sha256sum | cut -c1-12)
cache_root=${MEDIASOUP_WORKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mediasoup-server/worker}
cache_dir="$cache_root/$VERSION-$recipe_hash"
cached="$cache_dir/mediasoup-worker"

need_apt() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	log "installing Debian packages: ${missing[*]}"
	local sudo=""
	[ "$(id -u)" = 0 ] || sudo=$(command -v sudo || true)
	[ "$(id -u)" = 0 ] || [ -n "$sudo" ] || die "need root (or sudo) to apt-get install ${missing[*]}"
	$sudo apt-get update -qq || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install ${missing[*]} failed"
}

mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9 # one build at a time per machine

if [ -x "$cached" ]; then
	# The cached binary links Debian's shared libraries: make sure they are here.
	need_apt libuv1 libssl3 libsrtp2-1 libabsl20220623
	log "cached: $cached"
	install_out "$cached"
	exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -n "$PREBUILT_SHA256" ] && command -v curl >/dev/null; then
	log "trying the prebuilt release ($PREBUILT_URL)"
	if curl -fsSL --connect-timeout 5 --max-time 120 -o "$work/prebuilt.tgz" "$PREBUILT_URL" &&
		echo "$PREBUILT_SHA256  $work/prebuilt.tgz" | sha256sum -c --quiet - &&
		tar -xzf "$work/prebuilt.tgz" -C "$work" && [ -x "$work/mediasoup-worker" ]; then
		mkdir -p "$cache_dir"
		mv "$work/mediasoup-worker" "$cached.tmp" && mv "$cached.tmp" "$cached"
		install_out "$cached"
		exit 0
	fi
	log "prebuilt release unavailable or checksum mismatch; building from source"
fi

need_apt "${APT_PACKAGES[@]}"
command -v npm >/dev/null || die "npm is needed to fetch mediasoup@$VERSION from the npm registry"

log "fetching mediasoup@$VERSION from the npm registry"
(cd "$work" && npm pack --silent "mediasoup@$VERSION" >/dev/null) || die "npm pack mediasoup@$VERSION failed"
tgz="$work/mediasoup-$VERSION.tgz"
got=$(python3 -c 'import base64,hashlib,sys; print("sha512-"+base64.b64encode(hashlib.sha512(open(sys.argv[1],"rb").read()).digest()).decode())' "$tgz")
[ "$got" = "$INTEGRITY" ] || die "mediasoup-$VERSION.tgz integrity mismatch: got $got"
tar -xzf "$tgz" -C "$work"
src="$work/package/worker"

python3 "$here/patch.py" "$src" "$here/compat"

jobs=${WORKER_BUILD_JOBS:-$(nproc)}
log "building mediasoup-worker $VERSION with $jobs jobs (about 7 minutes on 2 cores)"
(
	cd "$src"
	meson setup build --buildtype=release -Db_ndebug=true --wrap-mode=nofallback >"$work/setup.log" 2>&1 || { tail -40 "$work/setup.log"; exit 1; }
	meson compile -C build flatbuffers-generator >"$work/fbs.log" 2>&1 || { tail -40 "$work/fbs.log"; exit 1; }
	ninja -C build -j "$jobs" mediasoup-worker >"$work/build.log" 2>&1 || { grep -m20 -B2 -A8 'error' "$work/build.log"; exit 1; }
) || die "build failed (logs above)"

mkdir -p "$cache_dir"
strip "$src/build/mediasoup-worker" -o "$cached.tmp"
mv -f "$cached.tmp" "$cached"
install_out "$cached"
