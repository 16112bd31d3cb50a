#!/usr/bin/env bash
# Creates the Secret `switchboard-secrets` with random values when it does not
# exist yet; an existing one (yours, or one made by an earlier run) keeps its
# values, so Postgres keeps the password its volume was initialised with (keys
# it lacks, added to the example since, get random values).
# The keys are those of base/secret.example.yaml.
#   deploy/k8s/create-secret.sh [namespace]
set -euo pipefail
ns="${1:-switchboard}"
kubectl="${KUBECTL:-kubectl}"
here="$(cd "$(dirname "$0")" && pwd)"
name=switchboard-secrets

# the keys of the example Secret
keys() {
  sed -n '/^stringData:/,$p' "$here/base/secret.example.yaml" |
    sed -n 's/^  \([A-Z_][A-Z0-9_]*\):.*/\1/p'
}

if $kubectl -n "$ns" get secret "$name" >/dev/null 2>&1; then
  # refuse the example's placeholders: they are public
  data=$($kubectl -n "$ns" get secret "$name" -o go-template='{{range $k, $v := .data}}{{$k}}={{$v | base64decode}}{{"\n"}}{{end}}')
  if grep -q 'CHANGE-ME\|CHANGEME' <<<"$data"; then
    echo "secret $ns/$name still holds placeholder values (CHANGE-ME) for:" >&2
    grep 'CHANGE-ME\|CHANGEME' <<<"$data" | cut -d= -f1 | sed 's/^/  /' >&2
    echo "replace them (kubectl -n $ns edit secret $name) before deploying" >&2
    exit 1
  fi
  # keys added since it was made (e.g. UI_ADMIN_PASSWORD) get random values;
  # the values it has are never replaced
  have=$(cut -d= -f1 <<<"$data")
  added=()
  for k in $(keys); do
    grep -qx "$k" <<<"$have" && continue
    v=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
    $kubectl -n "$ns" patch secret "$name" --type=merge \
      -p "{\"stringData\":{\"$k\":\"$v\"}}" >/dev/null
    added+=("$k")
  done
  if [ ${#added[@]} -gt 0 ]; then
    echo "secret $ns/$name exists; added random values for the new keys: ${added[*]}"
  else
    echo "secret $ns/$name exists; left as it is"
  fi
  exit 0
fi
# the namespace first (the kustomization makes it too; applying twice is fine)
$kubectl create namespace "$ns" --dry-run=client -o yaml | $kubectl apply -f - >/dev/null

keys=$(keys)
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
echo "dashboard password (user admin): kubectl -n $ns get secret $name -o jsonpath='{.data.UI_ADMIN_PASSWORD}' | base64 -d"
echo "API token: kubectl -n $ns get secret $name -o jsonpath='{.data.API_TOKEN}' | base64 -d"
