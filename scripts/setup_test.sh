#!/usr/bin/env bash
# scripts/setup against fake machines: apt, dpkg, QEMU, sudo and `id` are stand-ins on PATH that
# record every call, and the OS and apt's sources are files of the test's own. Shows that setup
#   - stops on another OS or release before it calls apt or dpkg;
#   - takes the mirror for bookworm-backports from apt's enabled sources (a commented-out
#     backports line does not count), and writes no host of its own;
#   - refuses, explaining, when apt has no source to take a mirror from;
#   - works for a non-root user without sudo when nothing is missing;
#   - stops and disables the etcd service Debian's etcd-server installs (tests start their own);
#   - creates QEMU's user and group once, gives the group rw on /dev/userfaultfd and writes the
#     udev rule that keeps it across reboots, and touches none of it on a second run.
set -u
setup=$(realpath "$1")
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A machine: a copy of scripts/setup (alone, so the guest build step is absent), fake tools.
# $1: QEMU major version on the machine (0: none); $2: uid; $3: "sudo" to have sudo.
make_machine() {
  local dir=$work/$4
  mkdir -p "$dir/repo/scripts" "$dir/bin" "$dir/apt/sources.list.d"
  cp "$setup" "$dir/repo/scripts/setup"
  : >"$dir/calls"
  for tool in apt-get dpkg-query sudo pg_ctlcluster systemctl service update-rc.d getent groupadd \
    useradd chgrp chmod; do
    printf '#!/bin/sh\necho "%s $*" >>%s/calls\n' "$tool" "$dir" >"$dir/bin/$tool"
  done
  # getent: no such user or group.
  printf 'exit 2\n' >>"$dir/bin/getent"
  # dpkg-query: every package installed.
  printf 'echo "install ok installed"\n' >>"$dir/bin/dpkg-query"
  # sudo runs its command.
  printf 'exec "$@"\n' >>"$dir/bin/sudo"
  [ "$3" = sudo ] || rm "$dir/bin/sudo"
  printf '#!/bin/sh\necho %s\n' "$2" >"$dir/bin/id"
  if [ "$1" != 0 ]; then
    printf '#!/bin/sh\necho "QEMU emulator version %s.0.2"\n' "$1" >"$dir/bin/qemu-system-x86_64"
  fi
  chmod +x "$dir/bin/"*
  printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n' >"$dir/os-release"
  : >"$dir/userfaultfd"
  echo "$dir"
}

run_setup() {  # dir -> output in $dir/out, status in $dir/rc
  local dir=$1
  env -i PATH="$dir/bin:/usr/bin:/bin" HOME="$dir" AUTOSCALE_OS_RELEASE="$dir/os-release" \
    AUTOSCALE_APT_DIR="$dir/apt" AUTOSCALE_USERFAULTFD="$dir/userfaultfd" \
    AUTOSCALE_UDEV_RULES="$dir/rules.d" bash "$dir/repo/scripts/setup" >"$dir/out" 2>&1
  echo $? >"$dir/rc"
}

# 1. Another release: stops before apt or dpkg.
m=$(make_machine 10 0 sudo other)
printf 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nID=ubuntu\nVERSION_ID="22.04"\n' >"$m/os-release"
run_setup "$m"
[ "$(cat "$m/rc")" != 0 ] || fail "another OS: setup exited 0"
grep -q "Debian 12" "$m/out" && grep -q "Ubuntu 22.04.4 LTS" "$m/out" ||
  fail "another OS: the message names neither the wanted nor the found release: $(cat "$m/out")"
[ ! -s "$m/calls" ] || fail "another OS: setup called $(cat "$m/calls")"
m=$(make_machine 10 0 sudo debian11)
printf 'PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nID=debian\nVERSION_ID="11"\n' >"$m/os-release"
run_setup "$m"
[ "$(cat "$m/rc")" != 0 ] && [ ! -s "$m/calls" ] || fail "Debian 11: rc $(cat "$m/rc"), calls $(cat "$m/calls")"

# 2. QEMU 7 and a commented-out backports line: backports added on the configured mirror.
m=$(make_machine 7 0 nosudo mirror)
printf 'Types: deb\nURIs: file:/srv/mirror/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: file:/srv/mirror/debian-security\nSuites: bookworm-security\nComponents: main\n' \
  >"$m/apt/sources.list.d/debian.sources"
printf '# deb file:/srv/old/debian bookworm-backports main\n' >"$m/apt/sources.list"
run_setup "$m"
backports=$m/apt/sources.list.d/bookworm-backports.sources
[ -f "$backports" ] || fail "mirror: no backports source written: $(cat "$m/out")"
grep -qx "URIs: file:/srv/mirror/debian" "$backports" ||
  fail "mirror: backports not on the configured mirror: $(cat "$backports" 2>/dev/null)"
grep -q "apt-get install .*-t bookworm-backports qemu-system-x86" "$m/calls" ||
  fail "mirror: QEMU not installed from backports: $(cat "$m/calls")"

# 3. An enabled backports line already there: nothing written.
m=$(make_machine 7 0 nosudo present)
printf 'deb [signed-by=/k.gpg] file:/srv/mirror/debian bookworm-backports main\n' >"$m/apt/sources.list"
run_setup "$m"
[ ! -e "$m/apt/sources.list.d/bookworm-backports.sources" ] || fail "present: a second backports source was written"

# 4. No enabled source at all: refused, explaining, nothing installed.
m=$(make_machine 7 0 nosudo nosource)
printf 'Types: deb\nURIs: file:/srv/mirror/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n' \
  >"$m/apt/sources.list.d/debian.sources"
run_setup "$m"
[ "$(cat "$m/rc")" != 0 ] || fail "no source: setup exited 0"
grep -q "bookworm-backports" "$m/out" || fail "no source: unexplained: $(cat "$m/out")"
! grep -q "apt-get install" "$m/calls" || fail "no source: installed anyway"

# 5. Not root, no sudo, nothing missing: fine.
m=$(make_machine 10 1000 nosudo user)
run_setup "$m"
[ "$(cat "$m/rc")" = 0 ] || fail "non-root, nothing missing: rc $(cat "$m/rc"): $(cat "$m/out")"
grep -q "nothing installed" "$m/out" || fail "non-root: $(cat "$m/out")"
# ... and with something missing, a clear refusal.
m=$(make_machine 7 1000 nosudo user2)
run_setup "$m"
[ "$(cat "$m/rc")" != 0 ] && grep -q "run as root, or install sudo" "$m/out" ||
  fail "non-root, QEMU missing: $(cat "$m/out")"

# 6. etcd-server missing: installed, and the service Debian enables is stopped and disabled.
m=$(make_machine 10 0 nosudo etcd)
printf '#!/bin/sh\necho "dpkg-query $*" >>%s/calls\ncase "$*" in *etcd-server*) exit 1 ;; esac\necho "install ok installed"\n' \
  "$m" >"$m/bin/dpkg-query"
run_setup "$m"
[ "$(cat "$m/rc")" = 0 ] || fail "etcd: rc $(cat "$m/rc"): $(cat "$m/out")"
grep -q "apt-get install .* etcd-server" "$m/calls" || fail "etcd: not installed: $(cat "$m/calls")"
grep -qE "systemctl disable --now etcd|update-rc.d etcd disable" "$m/calls" ||
  fail "etcd: the service was not disabled: $(cat "$m/calls")"

# 7. QEMU's user: made once, with its group's rw on userfaultfd and the udev rule; a second run
# on a machine where it exists (getent finds it, the device and rule are right) changes nothing.
m=$(make_machine 10 0 nosudo qemu-user)
mkdir "$m/rules.d"
run_setup "$m"
[ "$(cat "$m/rc")" = 0 ] || fail "qemu user: rc $(cat "$m/rc"): $(cat "$m/out")"
grep -q "groupadd --system autoscale-qemu" "$m/calls" &&
  grep -q "useradd --system --gid autoscale-qemu .*--shell /usr/sbin/nologin autoscale-qemu" "$m/calls" ||
  fail "qemu user: not created: $(cat "$m/calls")"
grep -q "chgrp autoscale-qemu $m/userfaultfd" "$m/calls" && grep -q "chmod 0660 $m/userfaultfd" "$m/calls" ||
  fail "qemu user: userfaultfd not given to the group: $(cat "$m/calls")"
grep -qx 'KERNEL=="userfaultfd", GROUP="autoscale-qemu", MODE="0660"' "$m/rules.d/60-autoscale-userfaultfd.rules" ||
  fail "qemu user: no udev rule"
printf '#!/bin/sh\necho "getent $*" >>%s/calls\n' "$m" >"$m/bin/getent"
printf '#!/bin/sh\necho "stat $*" >>%s/calls\necho "autoscale-qemu 660"\n' "$m" >"$m/bin/stat"
chmod +x "$m/bin/getent" "$m/bin/stat"
: >"$m/calls"
run_setup "$m"
[ "$(cat "$m/rc")" = 0 ] || fail "qemu user, second run: rc $(cat "$m/rc"): $(cat "$m/out")"
! grep -qE "groupadd|useradd|chgrp|chmod|tee" "$m/calls" || fail "qemu user, second run: $(cat "$m/calls")"
# Not root and no sudo: nothing to do, and said so.
m=$(make_machine 10 1000 nosudo qemu-user-nonroot)
run_setup "$m"
! grep -qE "groupadd|useradd|chgrp" "$m/calls" && grep -q "user autoscale-qemu not checked" "$m/out" ||
  fail "qemu user, non-root: $(cat "$m/out") $(cat "$m/calls")"

# 8. No package-mirror host in the script itself: no scheme and host at all.
if grep -nE '[a-z]+:/{2}[a-z]' "$setup"; then
  fail "scripts/setup names a host"
fi

[ "$failures" = 0 ] && echo "PASS" || exit 1
