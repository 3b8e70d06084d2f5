#!/usr/bin/env bash
# Where a run's database work goes (bench/README.md, "Where the database time goes"): the throughput phase on a stock
# cluster of its own with pg_stat_statements (track = all), track_functions = pl and pg_walinspect, and per run, for
# the closed loop's measured window and for the drain separately: each statement's calls, total/mean ms and WAL bytes,
# each PL/pgSQL function's calls and self/total ms, the WAL by record type and by relation (heap and each index).
#
#   bench/profile-db.sh [benchmark args]      e.g. bench/profile-db.sh --seconds 15
#
# Build first (dotnet build bench/AgentPg.Benchmarks -c Release). The reports are printed and kept in
# $AGENTPG_BENCH_PROFILE (default artifacts/profile/<time>/): profile-closed-loop.md, profile-drain.md, bench.log.
# The throughput figures of a profiled run are not comparable with an unprofiled one (the extensions cost CPU);
# the counts and WAL bytes per run are, and do not depend on the machine's load.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source eng/pg.sh
export AGENTPG_BENCH_PROFILE="${AGENTPG_BENCH_PROFILE:-$ROOT/artifacts/profile/$(date -u +%Y%m%dT%H%M%S)}"
mkdir -p "$AGENTPG_BENCH_PROFILE"

pg_start stock
# The modules' own settings are only known once they are loaded (ALTER SYSTEM refuses them before), so they go into
# postgresql.conf; pg_ctl restart reuses the options the cluster was started with (postmaster.opts).
pg_as_owner tee -a "$AGENTPG_PG_DATA/postgresql.conf" >/dev/null <<'CONF'
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
pg_stat_statements.max = 10000
track_functions = pl
CONF
pg_as_owner "$PG_BIN/pg_ctl" -D "$AGENTPG_PG_DATA" -l "$PG_DIR/server.log" -w -t 60 restart >/dev/null
echo "[profile] load $(cut -d' ' -f1 /proc/loadavg), commit $(git rev-parse --short HEAD), reports in $AGENTPG_BENCH_PROFILE" >&2

dotnet run --project bench/AgentPg.Benchmarks -c Release --no-build -- --only throughput "$@" | tee "$AGENTPG_BENCH_PROFILE/bench.log"
