# RaptorFlow: `make run` (one full analysis on the local stack) and `make test` (every check).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
SOURCES := common local functions workflows tests bench tools

.PHONY: venv run web up down web-deps web-build test lint typecheck pytest train-router validate-terraform deploy deploy-check clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: RaptorFlow needs Python 3.11 (set PYTHON=...)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	tools/terraform-offline/check --setup
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

run: venv
	$(BIN)/raptorflow run --local
	@echo "The web app: \`make web\` serves it until Ctrl-C; \`make up\` keeps a stack (and the web app) running."

# The reference web app (web/): npm packages from the lockfile and Debian's Chromium for its
# browser tests (web/setup.sh), the bundle in web/dist, and the app on a local stack.
web-deps:
	@bash web/setup.sh

web-build: web-deps
	cd web && node build.mjs

web: venv web-build
	$(BIN)/raptorflow web

# The local stack in the background, on the data `make run` and `make web` keep in .local/.
up: venv web-build
	$(BIN)/raptorflow up

down: venv
	$(BIN)/raptorflow down

test: venv web-deps lint typecheck pytest

lint: venv
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)

typecheck: venv web-deps
	$(BIN)/mypy $(SOURCES)
	cd web && node_modules/.bin/tsc --noEmit

pytest: venv
	$(BIN)/pytest --cov --cov-report=term $(PYTEST_ARGS)

# The learned complexity router's model (common/llm/router_model.json) from the vendored data,
# bit for bit (tools/train_router.py; one BLAS thread, so the solves are deterministic).
# FEEDBACK=FILE adds the product's own outcomes (`raptorflow router-feedback --prompts ...`).
train-router: venv
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m tools.train_router $(if $(FEEDBACK),--feedback $(FEEDBACK))

clean:
	rm -rf $(VENV) tools/terraform-offline/.venv .pytest_cache .mypy_cache .ruff_cache .coverage

# Terraform (terraform/, docs/deploy.md). Variables: PROJECT_ID=... or terraform/terraform.tfvars.
TF := terraform -chdir=terraform
TF_VARS := $(if $(PROJECT_ID),-var project_id=$(PROJECT_ID))
OFFLINE_CHECK := tools/terraform-offline/check
# The hashicorp/google versions the offline check validates: the lowest and highest versions.tf allows.
OFFLINE_GOOGLE := 7.41.0 8.7.0

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
	  for version in $(OFFLINE_GOOGLE); do \
	    echo "hashicorp/google $$version:"; \
	    $(OFFLINE_CHECK) terraform --provider hashicorp/google=$$version -- -var project_id=$(or $(PROJECT_ID),demo-project); \
	  done; \
	fi

# One plan, applied as planned. Secrets are declared without values: add them afterwards
# (docs/deploy.md); until then the phases answer 503 and the rest of the system works.
deploy:
	@test -n "$(PROJECT_ID)" || grep -qs '^ *project_id' terraform/terraform.tfvars || \
	  { echo "deploy: set PROJECT_ID=... or project_id in terraform/terraform.tfvars"; exit 1; }
	$(PYTHON) terraform/scripts/packages.py --check
	$(TF) init -input=false
	mkdir -p terraform/.build
	$(TF) plan -input=false $(TF_VARS) -out=.build/deploy.tfplan
	$(TF) apply -input=false .build/deploy.tfplan
	@echo "deploy: applied. API keys still without a value: see docs/deploy.md (Secrets)."
	@echo "deploy: the web app: make web-build && terraform -chdir=terraform output -json web_app_config > web/dist/config.json,"
	@echo "        then serve web/dist from an origin in \`terraform -chdir=terraform output web_origins\` (docs/deploy.md, Web app)."

# For a team with a real project: apply, an empty second plan, a smoke run of the sample business,
# a sign-in through Identity Platform, destroy, apply again (terraform/scripts/deploy_check.sh;
# docs/deploy.md). Needs OPENAI_API_KEY or GEMINI_API_KEY in the environment.
deploy-check: venv
	@test -n "$(PROJECT_ID)" || { echo "deploy-check: set PROJECT_ID=... (a project you may deploy to and destroy)"; exit 2; }
	$(PYTHON) terraform/scripts/packages.py --check
	bash terraform/scripts/deploy_check.sh $(PROJECT_ID)
