#!/bin/sh
# Runs inside the freshly debootstrapped root file system (chroot) before it is imported.
# Usage: finish-rootfs.sh MIRROR SUITE
# Makes apt usable in the container, keeps services from starting on package installs, and
# removes caches and machine identity so the image is small and the same on every build host.
set -eu
mirror=$1
suite=$2

cat >/etc/apt/sources.list.d/debian.sources <<SOURCES
Types: deb
URIs: $mirror
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
rm -f /etc/apt/sources.list

# No init system in a container: apt must not try to start services.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d

apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old \
       /var/log/apt/* /var/log/dpkg.log /var/log/bootstrap.log /var/log/alternatives.log \
       /usr/share/man/* /usr/share/info/* /tmp/* /var/tmp/*
: >/etc/machine-id
rm -f /etc/hostname /etc/resolv.conf
