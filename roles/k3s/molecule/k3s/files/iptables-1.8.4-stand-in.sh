#!/bin/sh
# STAND-IN for iptables 1.8.4 (legacy), the version Ubuntu 20.04 ships and k3s lists as a known
# problem, used only by the k3s role's Molecule scenario (molecule/k3s) on the agent container.
# It answers `iptables --version`, which is all the role asks; it changes no rule.
case "$1" in
  --version | -V) echo "iptables v1.8.4 (legacy)" ;;
  *)
    echo "stand-in iptables: only --version is answered" >&2
    exit 1
    ;;
esac
