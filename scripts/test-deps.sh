#!/usr/bin/env bash
# Installs the system programs Weft's tests run for real, when they are
# missing: curl and h2load (interop clients), prometheus (scrapes a mesh in
# the e2e tests; Debian starts no service here, the tests run it
# themselves), iptables and ip (transparent capture in a network
# namespace), gcc (cgo, for the race detector). Go programs (go-httpbin, podinfo, Jaeger, fortio) are built
# by the tests from tools/.
set -euo pipefail
need=()
command -v curl >/dev/null || need+=(curl)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v prometheus >/dev/null || need+=(prometheus)
command -v iptables >/dev/null || need+=(iptables)
command -v ip >/dev/null || need+=(iproute2)
command -v gcc >/dev/null || need+=(gcc) # the race detector (make test-race) and SPIRE's build use cgo
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing test dependencies: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then
  echo "installing test dependencies with sudo: ${need[*]}"
  sudo apt-get update -qq
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "missing test dependencies: ${need[*]}; install them (Debian: apt-get install -y ${need[*]})" >&2
  exit 1
fi
