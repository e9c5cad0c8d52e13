#!/usr/bin/env bash
# Makes a Docker engine available on this machine: installs Debian's docker.io if dockerd is
# missing, and starts dockerd if nothing answers. The two --default-ulimit flags are needed on
# hosts that do not grant CAP_SYS_RESOURCE (containers fail with "setrlimit ... not permitted").
# Safe to run concurrently: one caller installs and starts, the others wait and find it running.
set -euo pipefail
if docker info >/dev/null 2>&1; then
  exit 0
fi
exec 9>/var/lock/edgecast-docker-engine.lock
flock 9
if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  # The host's apt, shared with base-image.sh and cluster.sh.
  flock /var/lock/edgecast-apt.lock sh -c \
    'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null'
fi
mkdir -p /var/log
# fd 9 (the lock) is closed for dockerd: otherwise dockerd and every container shim it starts
# would hold the lock for as long as they live, and a later start would wait on it for ever.
nohup dockerd --default-ulimit nofile=20000:20000 --default-ulimit nproc=5000:5000 \
  >/var/log/edgecast-dockerd.log 2>&1 9>&- &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "dockerd did not start; see /var/log/edgecast-dockerd.log" >&2
tail -20 /var/log/edgecast-dockerd.log >&2
exit 1
