#!/usr/bin/env bash
# AgentPg build entry point.
#
#   ./build.sh quickstart [args]  run the quick-start sample end to end on a throwaway PostgreSQL
#                                 (Claude when ANTHROPIC_API_KEY is set, otherwise the bundled fake Claude)
#   ./build.sh test               build, start a throwaway PostgreSQL, run every test project, then the
#                                 benchmark harness in smoke mode (bench --smoke, one more line in the count);
#                                 print "N passed, N failed, N skipped" as the last line
#   ./build.sh sample NAME [args] run samples/NAME (Hierarchy, WorkerHost …) on a throwaway PostgreSQL
#   ./build.sh build              build everything (zero warnings: warnings are errors)
#   ./build.sh pack               Release .nupkg + .snupkg of every library into artifacts/packages
#   ./build.sh bench [args]       run the benchmarks on a PostgreSQL with stock settings (--smoke: every phase with
#                                 tiny counts, a check of the harness; bench/AgentPg.Benchmarks/README.md)
#   ./build.sh soak [--minutes N] chaos soak: worker processes killed, frozen and cut off by PostgreSQL restarts
#                                 under load, then checked for lost, stuck and duplicated work (bench/README.md)
#
# quickstart and sample use the PostgreSQL in AGENTPG_CONNECTION when it is set (any platform; see the README);
# otherwise they start a throwaway one, installed from Debian's packages when missing (root, or a user with sudo).
set -uo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
# shellcheck source=eng/pg.sh
source "$ROOT/eng/pg.sh"
# shellcheck source=eng/npm.sh
source "$ROOT/eng/npm.sh"
# shellcheck source=eng/chromium.sh
source "$ROOT/eng/chromium.sh"

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

build() {
  dotnet build "$ROOT/AgentPg.slnx" -c "${CONFIGURATION:-Debug}" -nologo -clp:ErrorsOnly "$@"
}

say() { printf '[build] %s\n' "$*" >&2; }

# Builds with a line before and after, so the first build (NuGet restore, a minute or more) is not a silent pause.
build_announced() {
  local started=$SECONDS
  if [ -d "$ROOT/src/AgentPg/obj" ]; then
    say "building AgentPg (${CONFIGURATION:-Debug})…"
  else
    say "building AgentPg (${CONFIGURATION:-Debug}) for the first time: restoring NuGet packages and compiling, this takes a minute or two…"
  fi
  local log
  log=$(build 2>&1)
  local rc=$?
  if [ $rc != 0 ]; then
    printf '%s\n' "$log"
    say "build failed"
    return $rc
  fi
  say "built in $(( SECONDS - started )) s"
}

# The database for samples: AGENTPG_CONNECTION when the caller set it, otherwise a throwaway cluster.
sample_database() {
  if [ -n "${AGENTPG_CONNECTION:-}" ]; then
    say "using the PostgreSQL in AGENTPG_CONNECTION"
    return 0
  fi
  say "starting a throwaway PostgreSQL (set AGENTPG_CONNECTION to use your own server instead)"
  pg_start test
}

cmd_test() {
  local started=$SECONDS
  say "building, then running every test project on a throwaway PostgreSQL (a few minutes; the last line is the summary)"
  if ! build; then
    echo "build failed"
    echo "0 passed, 1 failed"
    exit 1
  fi
  if ! pg_start test; then
    if [ "${CI:-}" = "true" ]; then
      echo "PostgreSQL could not be started"
      echo "0 passed, 1 failed"
      exit 1
    fi
    echo "PostgreSQL could not be started: database tests will be skipped" >&2
  fi
  # The MCP tests also talk to a real third-party server, installed from the npm registry once and cached in artifacts/npm.
  if ! mcp_everything_install; then
    if [ "${CI:-}" = "true" ]; then
      echo "@modelcontextprotocol/server-everything could not be installed"
      echo "0 passed, 1 failed"
      exit 1
    fi
    echo "@modelcontextprotocol/server-everything could not be installed: its tests will be skipped" >&2
  fi

  # The admin UI's browser tests drive Debian's chromium.
  if ! chromium_install; then
    if [ "${CI:-}" = "true" ]; then
      echo "chromium could not be installed"
      echo "0 passed, 1 failed"
      exit 1
    fi
    echo "chromium could not be installed: the browser tests will fail" >&2
  fi

  local results="$ROOT/artifacts/test-results"
  rm -rf "$results"
  mkdir -p "$results"
  local projects=()
  mapfile -t projects < <(find "$ROOT/test" -name '*Tests.csproj' | sort)
  local pids=() names=()
  for p in "${projects[@]}"; do
    local name
    name=$(basename "$p" .csproj)
    names+=("$name")
    dotnet test "$p" -c "${CONFIGURATION:-Debug}" --no-build --nologo \
      --logger "trx;LogFileName=$name.trx" --logger "console;verbosity=normal" \
      --results-directory "$results/$name" \
      --blame-hang-timeout 20m --blame-hang-dump-type none \
      >"$results/$name.log" 2>&1 &
    pids+=($!)
  done

  local passed=0 failed=0 skipped=0 i
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}"
    local rc=$? name=${names[$i]}
    local trx
    trx=$(find "$results/$name" -name '*.trx' 2>/dev/null | head -n 1)
    local total=0 p=0 f=0
    if [ -n "$trx" ]; then
      local counters
      counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
      total=$(sed -n 's/.* total="\([0-9]*\)".*/\1/p' <<<"$counters")
      p=$(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$counters")
      f=$(( $(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$counters") + $(sed -n 's/.* error="\([0-9]*\)".*/\1/p' <<<"$counters") + $(sed -n 's/.* timeout="\([0-9]*\)".*/\1/p' <<<"$counters") + $(sed -n 's/.* aborted="\([0-9]*\)".*/\1/p' <<<"$counters") ))
    fi
    total=${total:-0}; p=${p:-0}
    local s=$(( total - p - f ))
    if [ "$rc" != "0" ] && [ "$f" = "0" ]; then
      # The test host crashed or hung: count it as a failure so it cannot pass silently.
      f=1
      echo "!! $name: dotnet test exited with $rc without reporting a failed test (crash or hang); see $results/$name.log"
    fi
    grep -E '^\s+(Failed|Skipped) ' "$results/$name.log" | sed "s/^/   [$name]/" | head -n 200
    if [ "$f" != "0" ]; then
      # Show failure details for CI logs.
      sed -n '/^\s*Failed /,/^\s*\(Passed\|Failed\|Skipped\) /p' "$results/$name.log" | head -n 400
    fi
    echo "== $name: $p passed, $f failed, $s skipped"
    passed=$(( passed + p )); failed=$(( failed + f )); skipped=$(( skipped + s ))
  done

  # The benchmark harness, every phase with tiny counts, so it never rots (bench/AgentPg.Benchmarks/README.md): one more
  # line in the count. After the tests, on the same throwaway cluster (its own schema), so it does not slow them down.
  if [ -n "${AGENTPG_CONNECTION:-}" ]; then
    local bench_started=$SECONDS
    if dotnet run --project "$ROOT/bench/AgentPg.Benchmarks" -c "${CONFIGURATION:-Debug}" --no-build -- --smoke \
        >"$results/bench-smoke.log" 2>&1; then
      echo "== bench --smoke: passed in $(( SECONDS - bench_started )) s"
      passed=$(( passed + 1 ))
    else
      echo "== bench --smoke: FAILED in $(( SECONDS - bench_started )) s; see $results/bench-smoke.log"
      tail -n 40 "$results/bench-smoke.log"
      failed=$(( failed + 1 ))
    fi
  else
    echo "== bench --smoke: skipped (no PostgreSQL)"
    skipped=$(( skipped + 1 ))
  fi
  pg_stop
  echo "test command took $(( SECONDS - started )) s"
  echo "$passed passed, $failed failed, $skipped skipped"
  if [ "$failed" != "0" ] || [ "$passed" = "0" ]; then
    exit 1
  fi
}

cmd_quickstart() {
  build_announced || exit 1
  sample_database || exit 1
  dotnet run --project "$ROOT/samples/Quickstart" -c "${CONFIGURATION:-Debug}" --no-build -- "$@"
  local rc=$?
  pg_stop
  exit $rc
}

cmd_sample() {
  local name="${1:-}"
  if [ -z "$name" ] || [ ! -d "$ROOT/samples/$name" ]; then
    echo "usage: ./build.sh sample NAME [args]; NAME is one of: $(ls "$ROOT/samples" | grep -v Directory | tr '\n' ' ')"
    exit 2
  fi
  shift
  build_announced || exit 1
  sample_database || exit 1
  dotnet run --project "$ROOT/samples/$name" -c "${CONFIGURATION:-Debug}" --no-build -- "$@"
  local rc=$?
  pg_stop
  exit $rc
}

cmd_pack() {
  local out="$ROOT/artifacts/packages"
  rm -rf "$out"
  mkdir -p "$out"
  local p
  for p in "$ROOT"/src/*/*.csproj; do
    echo "[pack] $(basename "$p" .csproj)"
    dotnet pack "$p" -c Release -o "$out" -nologo -clp:ErrorsOnly "$@" || exit 1
  done
  ls -1 "$out"
}

cmd_bench() {
  CONFIGURATION=Release build || exit 1
  pg_start stock || exit 1
  dotnet run --project "$ROOT/bench/AgentPg.Benchmarks" -c Release --no-build -- "$@"
  local rc=$?
  pg_stop
  exit $rc
}

# The soak restarts PostgreSQL, so it always runs on a throwaway cluster of its own (never AGENTPG_CONNECTION).
cmd_soak() {
  CONFIGURATION=Release build || exit 1
  pg_start test || exit 1
  dotnet run --project "$ROOT/bench/AgentPg.Soak" -c Release --no-build -- "$@"
  local rc=$?
  pg_stop
  exit $rc
}

case "${1:-}" in
  test) shift; cmd_test "$@" ;;
  quickstart|run) shift; cmd_quickstart "$@" ;;
  sample) shift; cmd_sample "$@" ;;
  build) shift; build "$@" ;;
  pack) shift; cmd_pack "$@" ;;
  bench) shift; cmd_bench "$@" ;;
  soak) shift; cmd_soak "$@" ;;
  *) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 2 ;;
esac
