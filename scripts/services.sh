#!/usr/bin/env bash
# Starts, or installs and starts, what the test suite talks to: tmux (the dashboard's end-to-end
# test), Python's venv (schemathesis), and PostgreSQL on 127.0.0.1:5432 (tests/postgres).
#
# An existing PostgreSQL is only started, never reconfigured. One this script installs gets trust
# authentication on loopback, for tests only. Without root, or without Debian's apt, it says
# what is missing and the tests that need it say they were skipped; with CI=true it fails.
set -uo pipefail

ci() { [ "${CI:-}" = "true" ] || [ "${CI:-}" = "1" ]; }
missing() {
  if ci; then echo "services.sh: $1" >&2; exit 1; fi
  echo "services.sh: $1 (the tests that need it will say they were skipped)" >&2
}
apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    missing "cannot install $* (needs root and apt-get)"; return 1
  fi
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq >/dev/null; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

command -v tmux >/dev/null || apt_install tmux
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  apt_install python3-venv
fi

PGHOST_PORT=5432
pg_up() { (exec 3<>"/dev/tcp/127.0.0.1/$PGHOST_PORT") 2>/dev/null; }
if [ -n "${CB_TEST_POSTGRES:-}" ] || pg_up; then
  exit 0
fi
installed=
if ! ls -d /etc/postgresql/*/main >/dev/null 2>&1; then
  apt_install postgresql || exit 0
  installed=1
fi
version=$(ls /etc/postgresql | sort -V | tail -1)
if [ -n "$installed" ]; then
  # Debian's cluster asks for a password on TCP; this one serves tests on loopback only.
  sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' \
    "/etc/postgresql/$version/main/pg_hba.conf"
fi
pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
for _ in $(seq 1 60); do
  pg_up && exit 0
  sleep 0.5
done
missing "PostgreSQL $version did not start on 127.0.0.1:$PGHOST_PORT"
exit 0
