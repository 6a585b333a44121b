#!/usr/bin/env bash
# tools/redocly/lint.sh - lints api/openapi.yaml with Redocly CLI, the exact
# version package.json pins (package-lock.json fixes the whole tree), with
# the rules in redocly.yaml (recommended, exceptions explained there).
# Installs the CLI into tools/redocly/node_modules from the npm registry on
# first use (npm ci: exactly the lock file). Exits non-zero on any error.
#   tools/redocly/lint.sh [file.yaml]     (default: api/openapi.yaml)
# Needs node and npm (scripts/setup.sh installs them).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
spec="$(realpath "${1:-$here/../../api/openapi.yaml}")"
cd "$here"
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "lint: $tool is needed (scripts/setup.sh)"; exit 1; }
done
# no telemetry, no update check: the lint talks to nobody
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
export NO_UPDATE_NOTIFIER=1 npm_config_update_notifier=false
want="$(node -p 'require("./package.json").devDependencies["@redocly/cli"]')"
have="$(node -p 'try { require("./node_modules/@redocly/cli/package.json").version } catch (e) { "" }')"
if [[ "$have" != "$want" ]]; then
  echo "lint: installing @redocly/cli $want (npm ci)"
  # a lock on the install, so two runs at once do not both write node_modules
  exec 9>"${TMPDIR:-/tmp}/bufcache-redocly-npm-ci.lock"
  flock 9
  have="$(node -p 'try { require("./node_modules/@redocly/cli/package.json").version } catch (e) { "" }')"
  if [[ "$have" != "$want" ]]; then
    npm ci --no-audit --no-fund --loglevel=error
  fi
  flock -u 9
fi
exec npx --no-install redocly lint --config "$here/redocly.yaml" "$spec"
