# RaptorFlow: `make run` (one full analysis on the local stack) and `make test` (every check).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
SOURCES := common functions workflows tests bench

.PHONY: venv run web web-deps web-build test lint typecheck pytest validate-terraform deploy clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: RaptorFlow needs Python 3.11 (set PYTHON=...)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

run: venv
	$(BIN)/raptorflow run --local
	@echo "The web app: \`make web\` serves it on a local stack at http://127.0.0.1:8080/"

# The reference web app (web/): npm packages from the lockfile and Debian's Chromium for its
# browser tests (web/setup.sh), the bundle in web/dist, and the app on a local stack.
web-deps:
	@bash web/setup.sh

web-build: web-deps
	cd web && node build.mjs

web: venv web-build
	$(BIN)/raptorflow web

test: venv web-deps lint typecheck pytest

lint: venv
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)

typecheck: venv web-deps
	$(BIN)/mypy $(SOURCES)
	cd web && node_modules/.bin/tsc --noEmit

pytest: venv
	$(BIN)/pytest --cov --cov-report=term $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage

# Terraform (terraform/, docs/deploy.md). Variables: PROJECT_ID=... or terraform/terraform.tfvars.
TF := terraform -chdir=terraform
TF_VARS := $(if $(PROJECT_ID),-var project_id=$(PROJECT_ID))
OFFLINE_CHECK := ../shared/tools/terraform-offline/check

# The real providers when a registry answers `terraform init` (plan needs Application Default
# Credentials); otherwise the offline check (real Terraform against the providers' schemas).
validate-terraform:
	@log=$$(mktemp); \
	if timeout 120 $(TF) init -backend=false -input=false -no-color >"$$log" 2>&1; then \
	  rm -f "$$log"; echo "validate-terraform: real providers"; \
	  $(TF) fmt -check -recursive; \
	  $(TF) validate; \
	  if gcloud auth application-default print-access-token >/dev/null 2>&1; then \
	    $(TF) plan -refresh=false -lock=false -input=false -var project_id=$(or $(PROJECT_ID),demo-project); \
	  else echo "validate-terraform: no Application Default Credentials, plan skipped (gcloud auth application-default login)"; fi; \
	else \
	  rm -f "$$log"; echo "validate-terraform: no provider registry reachable, offline check"; \
	  $(OFFLINE_CHECK) terraform -- -var project_id=$(or $(PROJECT_ID),demo-project); \
	fi

# APIs and secrets first, then stop until every secret has a value, then everything else.
deploy:
	@test -n "$(PROJECT_ID)" || grep -qs '^ *project_id' terraform/terraform.tfvars || \
	  { echo "deploy: set PROJECT_ID=... or project_id in terraform/terraform.tfvars"; exit 1; }
	$(TF) init -input=false
	$(TF) apply -input=false $(TF_VARS) -target=google_project_service.enabled -target=google_secret_manager_secret.secret
	terraform/scripts/check_secrets.sh
	mkdir -p terraform/.build
	$(TF) plan -input=false $(TF_VARS) -out=.build/deploy.tfplan
	$(TF) apply -input=false .build/deploy.tfplan
