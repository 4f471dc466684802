#!/bin/sh
# Tartan @VERSION@ for linux/amd64, as one self-extracting file.
#
# After this script come @PAYLOAD_BYTES@ bytes of gzip'd tar: the Deno @DENO_VERSION@ runtime and the
# bundled program. The first run checks their SHA-256, unpacks them into a temporary directory
# next to the release directory, and publishes that directory with one symlink (symlink(2) is
# atomic and fails when it exists), so simultaneous first runs (two CNI calls) cannot see a half
# written tree: the loser removes its copy and uses the winner's. Later runs exec straight away.
# TARTAN_RUNTIME_DIR overrides where releases are unpacked.
payload_sha256=@PAYLOAD_SHA256@
payload_start=@PAYLOAD_START@
release=@VERSION@-@PAYLOAD_SHORT@

if [ -n "${TARTAN_RUNTIME_DIR:-}" ]; then
  base=$TARTAN_RUNTIME_DIR
elif [ -w /var/cache ]; then
  base=/var/cache/tartan
else
  base=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/tartan
fi
dir=$base/$release

fail() {
  echo "tartan: $*" >&2
  exit 1
}

unpack() {
  mkdir -p "$base" || fail "cannot create $base (set TARTAN_RUNTIME_DIR to a writable directory)"
  tmp=$(mktemp -d "$base/.$release.XXXXXX") || fail "cannot write to $base"
  sum=$(tail -c "+$payload_start" "$0" | sha256sum)
  sum=${sum%% *}
  if [ "$sum" != "$payload_sha256" ]; then
    rm -rf "$tmp"
    fail "$0 is damaged: its payload's SHA-256 is $sum, not $payload_sha256"
  fi
  if ! tail -c "+$payload_start" "$0" | gzip -dc | tar -xf - -C "$tmp"; then
    rm -rf "$tmp"
    fail "cannot unpack into $base"
  fi
  ln -sn "${tmp##*/}" "$dir" 2>/dev/null || rm -rf "$tmp"
}

[ -x "$dir/deno" ] || unpack
[ -x "$dir/deno" ] || fail "no runtime in $dir"
# Our own path, for what starts Tartan again (`tartan lab` starts `tartan run` on its nodes).
case $0 in
  /*) self=$0 ;;
  *) self=$PWD/$0 ;;
esac
TARTAN_EXECUTABLE=$self DENO_DIR=$dir/cache DENO_NO_UPDATE_CHECK=1 \
  exec "$dir/deno" run -q -A --no-config --cached-only \
  --v8-flags=@V8_FLAGS@ "$dir/@ENTRY@" "${0##*/}" "$@"
exit 1
