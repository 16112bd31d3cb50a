#!/usr/bin/env bash
# The tag `make docker-build` gives the images and `make k8s-deploy` puts in
# the manifests: the commit (12 hex digits), plus `-dirty-<hash of the
# changes>` when the work tree differs from it. A new build of other sources
# thus always gets a new tag, so the pods are replaced with it, and the same
# sources always get the same one. Outside git: `dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! head=$(git rev-parse --short=12 HEAD 2>/dev/null); then
  echo dev
  exit 0
fi
if [ -z "$(git status --porcelain 2>/dev/null)" ]; then
  echo "$head"
  exit 0
fi
# tracked changes, and untracked files that are not ignored (by content)
hash=$( {
  git diff HEAD
  git ls-files --others --exclude-standard -z | xargs -0 -r sha256sum
} | sha256sum | cut -c1-8)
echo "$head-dirty-$hash"
