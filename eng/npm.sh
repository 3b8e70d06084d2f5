#!/usr/bin/env bash
# The third-party MCP server the tests talk to: @modelcontextprotocol/server-everything from the npm registry,
# installed into artifacts/npm (git-ignored, kept between runs). Sourced by build.sh.
#
#   mcp_everything_install   installs node/npm from Debian's packages when missing, then the server when missing;
#                            exports AGENTPG_MCP_EVERYTHING (the server's entry point, run as: node PATH stdio)

MCP_EVERYTHING_VERSION="2026.8.31"

mcp_log() { printf '[mcp] %s\n' "$*" >&2; }

mcp_node_install_if_missing() {
  if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    mcp_log "node/npm are not installed and this is not a Debian system: install Node.js 18 or newer to run the MCP tests."
    return 1
  fi
  local sudo=""
  if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else mcp_log "node is missing and this user cannot install it"; return 1; fi
  fi
  mcp_log "node/npm not found: installing them from Debian's packages (apt-get)."
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || { mcp_log "apt-get update failed"; return 1; }
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >&2 \
    || { mcp_log "apt-get install nodejs npm failed"; return 1; }
}

mcp_everything_install() {
  local dir="$ROOT/artifacts/npm"
  local entry="$dir/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
  local installed="$dir/node_modules/@modelcontextprotocol/server-everything/package.json"
  if [ ! -f "$entry" ] || ! grep -q "\"version\": \"$MCP_EVERYTHING_VERSION\"" "$installed" 2>/dev/null; then
    mcp_node_install_if_missing || return 1
    mkdir -p "$dir"
    mcp_log "installing @modelcontextprotocol/server-everything@$MCP_EVERYTHING_VERSION into artifacts/npm (once; cached)…"
    (cd "$dir" && npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
        "@modelcontextprotocol/server-everything@$MCP_EVERYTHING_VERSION" >&2) \
      || { mcp_log "npm install failed"; return 1; }
  fi
  export AGENTPG_MCP_EVERYTHING="$entry"
}
