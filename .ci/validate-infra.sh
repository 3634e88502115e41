#!/usr/bin/env bash
# Validates docker/ and k8s/ offline, with no Docker engine and no cluster (what is checked, and
# with what: README "Docker" and "Kubernetes", tools/validate-infra). Needs `npm ci` done.
#   bash .ci/validate-infra.sh [--kubectl | --no-kubectl]
# When installed, docker-compose (Debian package) and kubectl are used as second opinions: the
# compose file through `docker-compose config`, every kustomization through `kubectl kustomize`.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run build --silent
node dist/tools/validate-infra/main.js "$@"
