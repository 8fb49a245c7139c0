#!/usr/bin/env bash
# Used by `make deploy` between creating the secrets and deploying the functions: a function that
# mounts a secret with no version cannot start, so stop here and say how to add the values.
# Exit 0 when every secret in the Terraform state has a version, 1 otherwise.
set -euo pipefail
tf_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secrets=$(terraform -chdir="$tf_dir" show -json | python3 -c '
import json, sys
state = json.load(sys.stdin).get("values") or {}
for r in state.get("root_module", {}).get("resources", []):
    if r["type"] == "google_secret_manager_secret":
        print(r["values"]["name"])  # projects/NUMBER/secrets/ID
')
missing=0
for secret in $secrets; do
  if ! gcloud secrets versions describe latest --secret="$secret" >/dev/null 2>&1; then
    id=${secret##*/}
    project=$(echo "$secret" | cut -d/ -f2)
    echo "Secret $id has no value yet. Add it (the key is read from stdin, not the command line):"
    echo "  read -rs KEY && printf %s \"\$KEY\" | gcloud secrets versions add $id --project=$project --data-file=-"
    missing=1
  fi
done
if [[ $missing == 1 ]]; then
  echo "Then run make deploy again."
fi
exit $missing
