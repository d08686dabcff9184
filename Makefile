# Keel's two commands: `make dev` (run everything locally) and `make test`
# (everything CI checks). Both install what they need; no AWS account needed.

VENV := .keel/venv
PY_REQS := infra/local/requirements.txt
STAMP := $(VENV)/.installed
OIDC := tests/oidc
OIDC_STAMP := $(OIDC)/node_modules/.installed
FUZZ_VENV := .keel/schemathesis-venv
FUZZ_REQS := tests/fuzz/requirements.txt
FUZZ_STAMP := $(FUZZ_VENV)/.installed
CARGO ?= cargo

.PHONY: dev test venv fuzz-venv oidc-provider pdf-reader lint-template openapi api-fuzz bench lambda clean

## Run Keel locally: AWS emulator, stack from template.yaml, demo data,
## every API function on http://127.0.0.1:$${KEEL_PORT:-3000}. Ctrl-C stops it.
dev: venv
	$(CARGO) run --locked -p keel-local

## Everything CI checks: template lint, unit and integration tests, and
## schemathesis against the served OpenAPI document.
test: venv oidc-provider pdf-reader lint-template
	$(CARGO) test --locked --workspace
	# The benches compile (test profile, so this reuses the build above).
	$(CARGO) test --locked --workspace --benches --no-run
	$(MAKE) --no-print-directory api-fuzz

## The Python tools the local stack and tests use (moto, cfn-lint, pyotp),
## pinned. An existing virtualenv is reused (it may be a link to a shared one).
venv: $(STAMP)
$(STAMP): $(PY_REQS)
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $(PY_REQS)
	touch $(STAMP)

## Schemathesis (and pyotp), pinned, in their own virtualenv: their
## dependencies stay apart from moto's.
fuzz-venv: $(FUZZ_STAMP)
$(FUZZ_STAMP): $(FUZZ_REQS)
	test -x $(FUZZ_VENV)/bin/python || python3 -m venv $(FUZZ_VENV)
	$(FUZZ_VENV)/bin/pip install --quiet --disable-pip-version-check -r $(FUZZ_REQS)
	touch $(FUZZ_STAMP)

## The real OpenID provider the OAuth tests sign in with (oidc-provider from
## npm, pinned by tests/oidc/package-lock.json; needs node 20+ and npm).
oidc-provider: $(OIDC_STAMP)
$(OIDC_STAMP): $(OIDC)/package-lock.json
	npm ci --prefix $(OIDC) --no-audit --no-fund
	touch $(OIDC_STAMP)

## `pdftotext` (poppler-utils), the independent reader the export tests read
## Keel's PDFs back with; installed with apt when missing (Debian, as root).
pdf-reader:
	@command -v pdftotext >/dev/null || (apt-get update && apt-get install -y poppler-utils)

lint-template: venv
	$(VENV)/bin/cfn-lint template.yaml

## Regenerate docs/openapi.json after changing the API.
openapi:
	KEEL_UPDATE_OPENAPI=1 $(CARGO) test --locked -p keel-tests --test api openapi:: -- --test-threads=1

## Schemathesis against a local stack (keel-local on a free port, 50 demo
## users), signed in as its admin with 2FA: fails on any server error or any
## response the served OpenAPI document does not describe (status, content
## type, schema). See tests/fuzz/api_fuzz.py (what is excluded and why).
api-fuzz: venv fuzz-venv
	$(CARGO) build --locked -p keel-local
	$(FUZZ_VENV)/bin/python tests/fuzz/api_fuzz.py

## Benchmarks (release builds): cold start, binary size, warm latency;
## exports of 1M rows to CSV and XLSX (rows/s, peak RSS).
bench: venv
	$(CARGO) build --locked --release -p auth -p admin -p data -p jobs -p streams -p scheduler -p keel-bench
	$(CARGO) run --locked --release -p keel-bench
	$(CARGO) run --locked --release -p keel-bench --bin login
	$(CARGO) run --locked --release -p keel-bench --bin export-bench

## Lambda artifacts for `sam deploy` (needs `pip install cargo-lambda`).
lambda:
	sam build --beta-features

clean:
	rm -rf target .keel $(OIDC)/node_modules
