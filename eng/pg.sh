#!/usr/bin/env bash
# Throwaway PostgreSQL for tests, samples and benchmarks. Sourced by build.sh.
#
#   pg_install_if_missing   installs PostgreSQL from Debian's packages when no server binaries exist
#   pg_start [profile]      starts a private cluster on 127.0.0.1 and a free port; exports AGENTPG_CONNECTION
#                           profile "test" (default) trades durability for speed; "stock" keeps PostgreSQL's
#                           defaults (benchmarks)
#   pg_stop                 stops the cluster and deletes its directory (also runs on exit)
#
# initdb refuses to run as root, so as root the cluster runs as the "postgres" user (created by the Debian
# package); as a normal user it runs as that user. sudo is only needed to install packages.

PG_BIN=""
PG_DIR=""
PG_PORT=""

pg_log() { printf '[pg] %s\n' "$*" >&2; }

pg_find_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
    PG_BIN="$d"
    return 0
  fi
  return 1
}

pg_as_owner() {
  if [ "$(id -u)" = "0" ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_install_if_missing() {
  if pg_find_bin; then
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    pg_log "PostgreSQL is not installed and this is not a Debian system, so it cannot be installed here."
    pg_log "Start PostgreSQL 15 or newer any way you like (for example: docker run -d -p 5432:5432 -e POSTGRES_PASSWORD=postgres postgres:17)"
    pg_log "and set AGENTPG_CONNECTION='Host=127.0.0.1;Username=postgres;Password=postgres;Database=postgres' (README: \"Without Debian\")."
    return 1
  fi
  local sudo=""
  if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo="sudo"
    else
      pg_log "PostgreSQL is not installed and this user cannot install it: run as root or install sudo."
      return 1
    fi
  fi
  pg_log "PostgreSQL not found: installing it from Debian's packages (apt-get)."
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || { pg_log "apt-get update failed"; return 1; }
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql postgresql-contrib >&2 \
    || { pg_log "apt-get install postgresql failed"; return 1; }
  pg_find_bin || { pg_log "PostgreSQL was installed but no initdb/pg_ctl was found under /usr/lib/postgresql"; return 1; }
}

pg_free_port() {
  local port i
  for i in $(seq 1 200); do
    port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

pg_start() {
  local profile="${1:-test}"
  pg_install_if_missing || return 1
  if [ "$(id -u)" = "0" ] && ! id postgres >/dev/null 2>&1; then
    pg_log "running as root but there is no 'postgres' user to own the cluster"
    return 1
  fi
  PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/agentpg-pg.XXXXXX")
  chmod 755 "$PG_DIR"
  if [ "$(id -u)" = "0" ]; then chown postgres "$PG_DIR"; fi
  PG_PORT=$(pg_free_port) || { pg_log "no free port found"; return 1; }

  pg_as_owner "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --no-locale --no-sync >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; pg_log "initdb failed"; return 1; }

  local opts="-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=400"
  if [ "$profile" = "test" ]; then
    # Durability is irrelevant for a cluster that is deleted after the run.
    opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=256MB"
  fi
  pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -o "$opts" -l "$PG_DIR/server.log" -w -t 60 start >/dev/null \
    || { cat "$PG_DIR/server.log" >&2; pg_log "PostgreSQL did not start"; return 1; }

  trap pg_stop EXIT
  export AGENTPG_CONNECTION="Host=127.0.0.1;Port=$PG_PORT;Username=postgres;Database=postgres"
  export AGENTPG_TEST_DATABASE="$AGENTPG_CONNECTION"
  export AGENTPG_PG_BIN="$PG_BIN"
  export AGENTPG_PG_DATA="$PG_DIR/data"
  export AGENTPG_PG_PORT="$PG_PORT"
  pg_log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') ($profile settings) on 127.0.0.1:$PG_PORT, data in $PG_DIR"
}

pg_stop() {
  if [ -n "$PG_DIR" ] && [ -d "$PG_DIR/data" ]; then
    pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
  PG_DIR=""
}
