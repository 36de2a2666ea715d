#!/usr/bin/env bash
# Run the test suite on other Debian releases, each in its own chroot (needs root and mmdebstrap):
#
#   bash scripts/test-matrix.sh trixie                 # Debian 13: QGIS 3.40, Python 3.13, numpy 2.2, GDAL 3.10
#   bash scripts/test-matrix.sh forky                  # Debian testing: QGIS 3.44, Python 3.14, numpy 2.x
#   bash scripts/test-matrix.sh bookworm               # Debian 12: QGIS 3.22 (what the host runs natively)
#   bash scripts/test-matrix.sh all                    # the three in turn
#   bash scripts/test-matrix.sh trixie tests/core -x   # further arguments go to pytest
#   bash scripts/test-matrix.sh trixie -- CMD ARGS...  # run CMD in the checkout instead of the tests
#
# The first run of a release builds a minimal Debian with mmdebstrap and installs everything with
# this checkout's scripts/setup.sh inside it (a few minutes); the chroot is kept in
# $SUBSIDENCE_CHROOT_CACHE (default /var/cache/subsidence-toolkit/chroots/<release>) and reused,
# and set up again when scripts/apt-packages.txt or scripts/setup.sh change. /proc, /sys, /dev and
# the checkout (at the same path) are bind-mounted for the run and unmounted on exit.
# Inside, the README's test command runs: bash scripts/test.sh [pytest arguments] (or CMD after --).
set -euo pipefail
cd "$(dirname "$0")/.."
checkout="$(pwd -P)"
cache="${SUBSIDENCE_CHROOT_CACHE:-/var/cache/subsidence-toolkit/chroots}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

usage() { sed -n '2,9s/^# \{0,1\}//p' "$0"; exit 2; }
[ $# -ge 1 ] || usage
target="$1"; shift
case "$target" in
  all) suites=(bookworm trixie forky) ;;
  bookworm|trixie|forky|sid) suites=("$target") ;;
  *) usage ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "test-matrix.sh: needs root (mmdebstrap, chroot, mount)" >&2; exit 2; }
if ! command -v mmdebstrap >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi
mkdir -p "$cache"

mounts=()   # mount points inside the chroot, unmounted in reverse order on exit
unmount_all() {
  local i
  for ((i=${#mounts[@]}-1; i>=0; i--)); do
    umount -R "${mounts[$i]}" 2>/dev/null || umount -R -l "${mounts[$i]}" 2>/dev/null || true
  done
  mounts=()
}
trap unmount_all EXIT
trap 'exit 130' INT TERM

bind() {   # bind <host path> <chroot root>: the same path inside the chroot, read-write
  local src="$1" dst="$2$1"
  mkdir -p "$dst" && mount --rbind "$src" "$dst" || return 1
  mounts+=("$dst")
  mount --make-rslave "$dst" || return 1
}

in_chroot() {   # in_chroot <root> <command...>: a clean environment, HOME=/root
  local root="$1"; shift
  chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 \
    QT_QPA_PLATFORM=offscreen CI="${CI:-}" "$@"
}

build() {   # build <suite> <root>: minimal Debian + everything scripts/setup.sh installs
  local suite="$1" root="$2" t0=$SECONDS
  local stamp
  stamp="$(cat scripts/apt-packages.txt scripts/setup.sh | sha256sum | cut -c1-16)"
  if [ -f "$root/.subsidence-ready" ] && [ "$(cat "$root/.subsidence-ready")" = "$stamp" ]; then
    return 0
  fi
  if [ ! -x "$root/usr/bin/apt-get" ] || [ ! -f "$root/.subsidence-base" ]; then
    echo "== $suite: building a minimal Debian in $root (mmdebstrap)"
    if grep -qE " ($root|$root\.partial)/" /proc/self/mounts; then   # never rm -rf through a bind mount
      echo "$root has mounts left from an interrupted run: unmount them (umount -R) first" >&2; return 1
    fi
    rm -rf "$root" "$root.partial"
    # The testing suite's Release file may be past its Valid-Until on the mirror: do not reject it.
    mmdebstrap --variant=apt --components=main --include=ca-certificates \
      --aptopt='Acquire::Check-Valid-Until "false"' --aptopt='APT::Install-Recommends "false"' \
      "$suite" "$root.partial" "$mirror" >"$cache/$suite.build.log" 2>&1 \
      || { tail -30 "$cache/$suite.build.log" >&2; echo "mmdebstrap $suite failed (log: $cache/$suite.build.log)" >&2; return 1; }
    mv "$root.partial" "$root"
    touch "$root/.subsidence-base"
  fi
  echo "== $suite: installing QGIS and the test dependencies (scripts/setup.sh inside the chroot)"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  # (functions run inside "if": errors are checked one by one, set -e does not apply there)
  bind /proc "$root" && bind /sys "$root" && bind /dev "$root" && bind "$checkout" "$root" \
    && in_chroot "$root" bash "$checkout/scripts/setup.sh" \
    || { unmount_all; echo "set-up of the $suite chroot failed" >&2; return 1; }
  unmount_all
  echo "$stamp" >"$root/.subsidence-ready"
  echo "== $suite: chroot ready in $((SECONDS - t0)) s"
}

run_suite() {   # run_suite <suite> [pytest arguments]
  local suite="$1"; shift
  local root="$cache/$suite" rc=0
  exec 9>"$cache/$suite.lock"
  flock 9   # one build or run per chroot at a time
  build "$suite" "$root" || return 1
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"   # for tools that download (pip in check-pyqt6.sh)
  bind /proc "$root" && bind /sys "$root" && bind /dev "$root" && bind "$checkout" "$root" \
    || { unmount_all; echo "cannot mount into the $suite chroot" >&2; return 1; }
  # A git worktree keeps its repository elsewhere: make that visible at the same path too.
  local common
  common="$(git -C "$checkout" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)"
  case "$common" in ""|"$checkout"/*) ;; *) bind "$common" "$root" || { unmount_all; return 1; } ;; esac
  mkdir -p "$root/tmp" && chmod 1777 "$root/tmp"
  # certificate authorities the host added locally (e.g. a proxy's) are trusted inside too
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    in_chroot "$root" update-ca-certificates >/dev/null 2>&1 || true
  fi
  local cmd=(bash scripts/test.sh "$@")
  if [ "${1:-}" = "--" ]; then shift; cmd=("$@"); fi
  echo "== $suite: ${cmd[*]}"
  in_chroot "$root" bash -c 'cd "$1" && shift && git config --global --add safe.directory "*" 2>/dev/null; \
    "$@"' _ "$checkout" "${cmd[@]}" || rc=$?
  unmount_all
  exec 9>&-
  return $rc
}

main() {
  local status=0 suite
  for suite in "${suites[@]}"; do
    if run_suite "$suite" "$@"; then echo "== $suite: passed"; else status=1; echo "== $suite: FAILED" >&2; fi
  done
  return $status
}
main "$@"; exit $?   # (one line: editing this file during a run cannot change what runs)
