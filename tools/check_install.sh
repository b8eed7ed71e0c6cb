#!/bin/sh
# tools/check_install.sh [WORKDIR]: as root, prove the install paths on a
# fresh Debian 12: debootstrap a chroot, clone this checkout into it, run
# `make install` and use spindle and its man page there; then `make deb`,
# and install that package with dpkg -i (apt-get -f install pulls its
# dependencies) into a second, untouched chroot and run a script with it.
# Needs debootstrap and network access to a Debian mirror; ~3 minutes.
set -eu
work=${1:-/tmp/spindle-chroots}
repo=$(cd "$(dirname "$0")/.." && pwd)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap
rm -rf "$work"; mkdir -p "$work"
for c in build clean; do
  debootstrap --variant=minbase bookworm "$work/$c" "$mirror" >/dev/null
  cp /etc/resolv.conf "$work/$c/etc/resolv.conf"
done
git clone -q "$repo" "$work/build/root/spindle"
cat > "$work/build/root/check.sh" <<'IN'
set -e
apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq make gcc git man-db >/dev/null 2>&1
cd /root/spindle
make -s install >/dev/null
echo "installed: $(command -v spindle) -> $(spindle -e 'print(1)')"
MANPAGER=cat man spindle | sed -n 4p
make deb >/dev/null 2>&1
ls build/spindle_*.deb
IN
chroot "$work/build" /bin/sh /root/check.sh
cp "$work"/build/root/spindle/build/spindle_*.deb "$work/clean/root/"
cat > "$work/clean/root/check.sh" <<'IN'
set -e
cd /root
dpkg -i spindle_*.deb >/dev/null 2>&1 || true
apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
  apt-get -f install -y -qq >/dev/null 2>&1
printf 'local r = require("spindle.reactor")\nr.callLater(0, function() print("ran " .. arg[0]) r.stop() end)\nr.run()\n' > s.lua
echo "package: $(dpkg -s spindle | grep Status)"
/usr/bin/spindle s.lua
IN
chroot "$work/clean" /bin/sh /root/check.sh
echo "check_install: OK"
