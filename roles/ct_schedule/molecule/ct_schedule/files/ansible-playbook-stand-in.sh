#!/bin/sh
# Stands in for a checkout's .venv/bin/ansible-playbook in the ct_schedule scenario: records how the
# service ran it (one line per fact, in the account's home) and exits 0, as a successful cycle does.
set -eu
record="$HOME/cycles.log"
{
  printf 'argc %s\n' "$#"
  for arg in "$@"; do
    printf 'arg %s\n' "$arg"
  done
  printf 'user %s\n' "$(id -un)"
  printf 'cwd %s\n' "$(pwd)"
  printf 'secret-sha256 %s\n' "$(printf '%s' "${EDGECAST_CT_TEST_SECRET:-}" | sha256sum | cut -d' ' -f1)"
  if flock --nonblock /run/lock/edgecast-ct.lock true; then
    printf 'lock free\n'
  else
    printf 'lock held\n'
  fi
} >>"$record"
echo "ansible-playbook stand-in: cycle recorded in $record"
