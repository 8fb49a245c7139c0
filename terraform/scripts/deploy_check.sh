#!/usr/bin/env bash
# The day-one check for a team with a real Google Cloud project (`make deploy-check
# PROJECT_ID=...`, docs/deploy.md "Deploy check"): everything a first deploy meets, in order.
#
#   1. apply          terraform apply of the configuration (a first apply when the project is new)
#   2. re-plan        a second plan must be empty (-detailed-exitcode)
#   3. keys           OPENAI_API_KEY / GEMINI_API_KEY from this environment into Secret Manager
#                     (read from the environment, written from stdin: never on a command line)
#   4. smoke run      the sample business registered and analysed; the run must succeed
#   5. sign-in        a new user signs up and signs in through Identity Platform's REST API with
#                     the web app's browser key (from the app's origin), calls the API's /v1/me
#                     with the ID token, and is deleted again
#   6. destroy        terraform destroy
#   7. apply again    the database and Identity Platform, which destroy leaves, imported; apply;
#                     and the plan after it empty again
#
# Needs terraform, gcloud and curl on PATH, Application Default Credentials with the deployer
# roles (docs/deploy.md), `make venv` done, and a model key in the environment (or a version of a
# key secret in the project already). Uses a dev environment: destroy removes what it made.
# Exit status: 0 every step passed; 1 a step failed (named on stderr); 2 bad usage.
set -euo pipefail

project=${1:-}
[[ -n $project ]] || { echo "usage: deploy_check.sh PROJECT_ID (region: REGION, default us-central1)" >&2; exit 2; }
region=${REGION:-us-central1}
raptorflow=${RAPTORFLOW:-.venv/bin/raptorflow}
sample=${SAMPLE_BUSINESS:-local/samples/tidewater.json}
vars=(-var "project_id=$project" -var "region=$region" -var "environment=dev")
step=""

tf() { terraform -chdir=terraform "$@"; }
begin() { step=$1; echo "deploy-check: $step" >&2; }
fail() { echo "deploy-check: FAILED at $step: $1" >&2; step=""; exit 1; }
# A command that fails under `set -e` names the step it stopped.
trap 'status=$?; [[ $status -eq 0 || -z $step ]] || echo "deploy-check: FAILED at $step (exit $status)" >&2' EXIT

# A plan after an apply must have nothing to do: exit 0 (2 means changes, 1 an error).
empty_plan() {
  local status=0
  tf plan -input=false -lock=false -detailed-exitcode "${vars[@]}" >/dev/null || status=$?
  case $status in
    0) ;;
    2) fail "the plan after the apply is not empty (terraform -chdir=terraform plan shows what changes)" ;;
    *) fail "terraform plan exited $status" ;;
  esac
}

# A field of a JSON document read from stdin (python3 is there: the project needs it).
field() { python3 -c 'import json, sys; v = json.load(sys.stdin)
for k in sys.argv[1:]: v = v[int(k) if isinstance(v, list) else k]
print(v)' "$@"; }

if [[ -z ${OPENAI_API_KEY:-}${GEMINI_API_KEY:-} ]]; then
  for secret in OPENAI_API_KEY GEMINI_API_KEY; do
    if gcloud secrets versions list "$secret" --project="$project" --filter=state=enabled \
        --format='value(name)' 2>/dev/null | grep -q .; then
      has_key=1
    fi
  done
  [[ -n ${has_key:-} ]] || { echo "deploy-check: export OPENAI_API_KEY or GEMINI_API_KEY (the smoke run calls a model)" >&2; exit 2; }
fi

begin "1/7 apply"
tf init -input=false >/dev/null
tf apply -input=false -auto-approve "${vars[@]}"

begin "2/7 re-plan"
empty_plan

begin "3/7 keys"
for secret in OPENAI_API_KEY GEMINI_API_KEY; do
  if [[ -n ${!secret:-} ]]; then
    printf %s "${!secret}" | gcloud secrets versions add "$secret" --project="$project" --data-file=- >/dev/null
  fi
done

begin "4/7 smoke run"
business=$(field business_id <"$sample")
export GOOGLE_CLOUD_PROJECT=$project REGION=$region
"$raptorflow" register "$business" --tier enterprise
"$raptorflow" run "$sample" || fail "the sample run did not succeed (its summary is above)"

begin "5/7 sign-in"
config=$(tf output -json web_app_config)
key=$(field firebase apiKey <<<"$config")
api=$(field apiUrl <<<"$config")
origin=$(tf output -json web_origins | field 0)
email="deploy-check-$(date +%s)-$RANDOM@example.com"
password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
identity=https://identitytoolkit.googleapis.com/v1
# The password and the ID token go through stdin, never as arguments another user of the
# machine could read; the browser key is public by design (every page of the app holds it).
account() {
  curl -sS --fail-with-body -X POST "$identity/accounts:$1" -H "X-Goog-Api-Key: $key" \
    -H "Referer: $origin/" -H "Content-Type: application/json" --data-binary @-
}
credentials=$(printf '{"email":"%s","password":"%s","returnSecureToken":true}' "$email" "$password")
account signUp <<<"$credentials" >/dev/null || fail "signUp with the browser key was refused"
token=$(account signInWithPassword <<<"$credentials" | field idToken) ||
  fail "signInWithPassword was refused"
me=$(curl -sS --fail-with-body "$api/v1/me" -H @- <<<"Authorization: Bearer $token") ||
  fail "the API refused the Identity Platform ID token"
[[ $(field email <<<"$me") == "$email" ]] || fail "the API's /v1/me did not name the signed-in user"
account delete <<<"{\"idToken\":\"$token\"}" >/dev/null || fail "deleting the check's user was refused"

begin "6/7 destroy"
tf destroy -input=false -auto-approve "${vars[@]}"

begin "7/7 apply again"
# What destroy leaves in the project (docs/deploy.md, "Destroy and deploy again").
tf import -input=false "${vars[@]}" google_firestore_database.main "projects/$project/databases/(default)"
tf import -input=false "${vars[@]}" google_identity_platform_config.auth "projects/$project/config"
tf apply -input=false -auto-approve "${vars[@]}"
empty_plan

step=""
echo "deploy-check: all 7 steps passed for $project (it stays deployed: terraform destroy removes it)" >&2
