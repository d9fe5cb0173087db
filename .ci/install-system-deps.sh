#!/usr/bin/env bash
# Installs the system pieces Talon's tests need on a fresh Debian 12 machine:
#   - nats-server (JetStream) from Debian
#   - pgvector for the machine's native PostgreSQL, built from Debian's source package
# The archive address is read from this machine's own apt sources, never hard-coded.
set -euo pipefail

log() { printf '[ci:deps] %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

apt_updated=0
apt_update_once() {
  if [ "$apt_updated" = 0 ]; then $SUDO apt-get update -qq || true; apt_updated=1; fi
}

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  log "installing nats-server"
  apt_update_once
  $SUDO apt-get install -y -qq nats-server >/dev/null
fi

# mitmdump: the egress upstream-proxy and CA-compatibility tests run against it;
# tinyproxy: the egress benchmark compares against it. iproute2/nftables: sandbox network-namespace test;
# setpriv (util-linux) confines sandbox plugin hosts.
missing=()
command -v mitmdump >/dev/null 2>&1 || missing+=(mitmproxy)
command -v tinyproxy >/dev/null 2>&1 || [ -x /usr/bin/tinyproxy ] || missing+=(tinyproxy)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
# chromium: the web UI is tested in headless Chromium (playwright-core drives it).
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  apt_update_once
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PG_MAJOR="${PG_MAJOR:-$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)}"
if [ -z "$PG_MAJOR" ]; then
  log "no native PostgreSQL found under /etc/postgresql; skipping pgvector"
  exit 0
fi
EXT_DIR="/usr/share/postgresql/${PG_MAJOR}/extension"
if [ -f "$EXT_DIR/vector.control" ]; then
  log "pgvector already installed for PostgreSQL $PG_MAJOR"
  exit 0
fi

log "building pgvector for PostgreSQL $PG_MAJOR from Debian's source package"
if [ ! -x "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config" ] || [ ! -d "/usr/include/postgresql/${PG_MAJOR}/server" ]; then
  apt_update_once
  $SUDO apt-get install -y -qq "postgresql-server-dev-${PG_MAJOR}" build-essential dpkg-dev >/dev/null
fi
command -v dpkg-source >/dev/null 2>&1 || { apt_update_once; $SUDO apt-get install -y -qq dpkg-dev >/dev/null; }

# The mirror address this machine already uses for Debian packages.
MIRROR="$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)"
if [ -z "$MIRROR" ]; then
  MIRROR="$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security | awk '{print $2}' | head -1 || true)"
fi
[ -n "$MIRROR" ] || { log "cannot find a Debian mirror in apt sources"; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/lists/partial" "$WORK/archives/partial"
# A throwaway apt configuration that only knows the newer release's source index.
cat >"$WORK/sources.list" <<SRC
deb-src [trusted=yes] ${MIRROR} trixie main
SRC
APT_OPTS=(-o "Dir::Etc::SourceList=$WORK/sources.list" -o "Dir::Etc::SourceParts=-"
  -o "Dir::State::Lists=$WORK/lists" -o "Dir::Cache::Archives=$WORK/archives"
  -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
apt-get "${APT_OPTS[@]}" update -qq
( cd "$WORK" && apt-get "${APT_OPTS[@]}" source --download-only pgvector >/dev/null )
DSC="$(ls "$WORK"/pgvector_*.dsc | head -1)"
( cd "$WORK" && dpkg-source --no-check -x "$DSC" src >/dev/null )
make -s -C "$WORK/src" PG_CONFIG="/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config" OPTFLAGS="" >/dev/null
$SUDO make -s -C "$WORK/src" PG_CONFIG="/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config" install >/dev/null
log "pgvector installed: $(grep default_version "$EXT_DIR/vector.control")"
