#!/usr/bin/env bash
# Debian's chromium for the admin UI's browser tests (Playwright drives it through ExecutablePath; no browser download).
# Sourced by build.sh.
#
#   chromium_install   installs chromium from Debian's packages when missing; exports AGENTPG_CHROMIUM

chromium_log() { printf '[chromium] %s\n' "$*" >&2; }

chromium_install() {
  local path
  path=$(command -v chromium || command -v chromium-browser || true)
  if [ -z "$path" ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
      chromium_log "chromium is not installed and this is not a Debian system: install Chromium and set AGENTPG_CHROMIUM to its path."
      return 1
    fi
    local sudo=""
    if [ "$(id -u)" != "0" ]; then
      if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else chromium_log "chromium is missing and this user cannot install it"; return 1; fi
    fi
    chromium_log "chromium not found: installing it from Debian's packages (apt-get, once)."
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || { chromium_log "apt-get update failed"; return 1; }
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2 \
      || { chromium_log "apt-get install chromium failed"; return 1; }
    path=$(command -v chromium || true)
    [ -n "$path" ] || { chromium_log "chromium is still missing after apt-get install"; return 1; }
  fi
  export AGENTPG_CHROMIUM="$path"
}
