#!/bin/sh
# STAND-IN (test only): turns this node's Debian docker.io into a package named docker-ce, so the
# node looks like a Jetson whose engine came from Docker's own repository. Docker's repository
# cannot be reached from the test machines. Like the real docker-ce, the package conflicts with
# docker.io: an `apt install docker.io` on this node would have to remove it, which verify.yml
# would see. The engine itself is the same dockerd, so it really runs.
set -eu
work=/var/tmp/docker-ce-stand-in
rm -rf "$work"
mkdir -p "$work/root/DEBIAN"
dpkg-query --listfiles docker.io | while read -r path; do
  if [ ! -d "$path" ]; then echo "${path#/}"; fi
done >"$work/files"
tar -C / -cf - --no-recursion -T "$work/files" | tar -C "$work/root" -xf -
cat >"$work/root/DEBIAN/control" <<CONTROL
Package: docker-ce
Version: 5:$(dpkg-query --show --showformat='${Version}' docker.io)~stand-in
Architecture: $(dpkg --print-architecture)
Maintainer: edgecast tests <tests@edgecast.invalid>
Depends: $(dpkg-query --show --showformat='${Depends}' docker.io)
Conflicts: docker.io
Description: stand-in for Docker's docker-ce: Debian's docker.io under docker-ce's name (test only)
CONTROL
dpkg-deb -Znone --build "$work/root" "$work/docker-ce.deb" >/dev/null
dpkg --purge docker.io >/dev/null
dpkg --install "$work/docker-ce.deb" >/dev/null
rm -rf "$work"
