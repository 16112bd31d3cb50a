#!/usr/bin/env bash
# Creates the Secret `switchboard-secrets` with random values when it does not
# exist yet; an existing one (yours, or one made by an earlier run) is left
# alone, so Postgres keeps the password its volume was initialised with.
# The keys are those of base/secret.example.yaml.
#   deploy/k8s/create-secret.sh [namespace]
set -euo pipefail
ns="${1:-switchboard}"
kubectl="${KUBECTL:-kubectl}"
here="$(cd "$(dirname "$0")" && pwd)"
name=switchboard-secrets

if $kubectl -n "$ns" get secret "$name" >/dev/null 2>&1; then
  # refuse the example's placeholders: they are public
  data=$($kubectl -n "$ns" get secret "$name" -o go-template='{{range $k, $v := .data}}{{$k}}={{$v | base64decode}}{{"\n"}}{{end}}')
  if grep -q 'CHANGE-ME\|CHANGEME' <<<"$data"; then
    echo "secret $ns/$name still holds placeholder values (CHANGE-ME) for:" >&2
    grep 'CHANGE-ME\|CHANGEME' <<<"$data" | cut -d= -f1 | sed 's/^/  /' >&2
    echo "replace them (kubectl -n $ns edit secret $name) before deploying" >&2
    exit 1
  fi
  echo "secret $ns/$name exists; left as it is"
  exit 0
fi
# the namespace first (the kustomization makes it too; applying twice is fine)
$kubectl create namespace "$ns" --dry-run=client -o yaml | $kubectl apply -f - >/dev/null

keys=$(sed -n '/^stringData:/,$p' "$here/base/secret.example.yaml" |
  sed -n 's/^  \([A-Z_][A-Z0-9_]*\):.*/\1/p')
args=()
for k in $keys; do
  # 24 random bytes as hex: 48 characters, URL-safe (DATABASE_URL), long
  # enough for CLUSTER_SECRET (32) and the tokens (16)
  v=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
  args+=("--from-literal=$k=$v")
done
$kubectl -n "$ns" create secret generic "$name" "${args[@]}" >/dev/null
$kubectl -n "$ns" label secret "$name" app.kubernetes.io/name=switchboard \
  app.kubernetes.io/part-of=switchboard >/dev/null
echo "secret $ns/$name created with random values for: $(echo $keys)"
echo "API token: kubectl -n $ns get secret $name -o jsonpath='{.data.API_TOKEN}' | base64 -d"
