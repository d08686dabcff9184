# Keel's two commands: `make dev` (run everything locally) and `make test`
# (everything CI checks). Both install what they need; no AWS account needed.

VENV := .keel/venv
PY_REQS := infra/local/requirements.txt
STAMP := $(VENV)/.installed
OIDC := tests/oidc
OIDC_STAMP := $(OIDC)/node_modules/.installed
CARGO ?= cargo

.PHONY: dev test venv oidc-provider pdf-reader lint-template openapi bench lambda clean

## Run Keel locally: AWS emulator, stack from template.yaml, demo data,
## every API function on http://127.0.0.1:$${KEEL_PORT:-3000}. Ctrl-C stops it.
dev: venv
	$(CARGO) run --locked -p keel-local

## Everything CI checks: template lint, unit and integration tests.
test: venv oidc-provider pdf-reader lint-template
	$(CARGO) test --locked --workspace
	# The benches compile (test profile, so this reuses the build above).
	$(CARGO) test --locked --workspace --benches --no-run

## The Python tools the local stack and tests use (moto, cfn-lint, pyotp),
## pinned. An existing virtualenv is reused (it may be a link to a shared one).
venv: $(STAMP)
$(STAMP): $(PY_REQS)
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $(PY_REQS)
	touch $(STAMP)

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

## Benchmarks (release builds): cold start, binary size, warm latency;
## exports of 1M rows to CSV and XLSX (rows/s, peak RSS); export requests,
## the first audit seal and verify on the demo data.
bench: venv
	$(CARGO) build --locked --release -p auth -p admin -p data -p jobs -p streams -p scheduler -p keel-bench
	$(CARGO) run --locked --release -p keel-bench
	$(CARGO) run --locked --release -p keel-bench --bin login
	$(CARGO) run --locked --release -p keel-bench --bin export-bench
	$(CARGO) run --locked --release -p keel-bench --bin demo-latency

## Lambda artifacts for `sam deploy` (needs `pip install cargo-lambda`).
lambda:
	sam build --beta-features

clean:
	rm -rf target .keel $(OIDC)/node_modules
