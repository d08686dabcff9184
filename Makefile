# Keel's two commands: `make dev` (run everything locally) and `make test`
# (everything CI checks). Both install what they need; no AWS account needed.

VENV := .keel/venv
PY_REQS := infra/local/requirements.txt
STAMP := $(VENV)/.installed
# checkov pins boto3 and networkx below what moto and cfn-lint use: its own venv.
CHECKOV_VENV := .keel/checkov-venv
CHECKOV_REQS := infra/local/checkov-requirements.txt
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
# cargo-lambda and zig (PyPI wheels) for `make lambda`.
LAMBDA_VENV := .keel/lambda-venv
LAMBDA_REQS := infra/local/lambda-requirements.txt
LAMBDA_STAMP := $(LAMBDA_VENV)/.installed
FUNCTIONS := auth admin data analytics reports search integrations compliance workflows jobs streams scheduler
ARM64_STD = $(shell rustc --print sysroot)/lib/rustlib/aarch64-unknown-linux-gnu/lib
OIDC := tests/oidc
OIDC_STAMP := $(OIDC)/node_modules/.installed
FUZZ_VENV := .keel/schemathesis-venv
FUZZ_REQS := tests/fuzz/requirements.txt
FUZZ_STAMP := $(FUZZ_VENV)/.installed
CARGO ?= cargo

.PHONY: dev test fmt-check clippy venv checkov-venv lambda-venv fuzz-venv oidc-provider pdf-reader lint-template cfn-lint check-policies checkov openapi api-fuzz bench lambda clean

## Run Keel locally: AWS emulator, stack from template.yaml, demo data,
## every API function on http://127.0.0.1:$${KEEL_PORT:-3000}. Ctrl-C stops it.
dev: venv
	$(CARGO) run --locked -p keel-local

## Everything CI checks: formatting, clippy (warnings are errors), template
## gates (cfn-lint, IAM, checkov), unit and integration tests (the layer
## check of shared/ is one: shared/tests/layers.rs), and schemathesis
## against the served OpenAPI document.
# A full run builds everything once: rustc's incremental caches would only
# add disk (about 4.6 GB of a 15 GB target dir) and time. The prerequisites
# (clippy) inherit it.
test: export CARGO_INCREMENTAL = 0
test: venv oidc-provider pdf-reader fmt-check lint-template clippy
	# Libraries and test targets only: the Lambda mains hold no tests, and
	# a test harness per binary would link the whole SDK 37 more times
	# (time and disk on a 2-core CI machine); clippy --all-targets has
	# already compiled them.
	$(CARGO) test --locked --workspace --lib --tests
	# The benches are compiled by clippy --all-targets above (type and
	# borrow checks); `make bench` builds and runs them.
	$(MAKE) --no-print-directory api-fuzz

## rustfmt.toml's style, checked (`cargo fmt --all` applies it).
fmt-check:
	$(CARGO) fmt --all -- --check

## Every lint of clippy's default set, on every target, as an error.
clippy:
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

## The Python tools the local stack and tests use (moto, cfn-lint, pyotp),
## pinned. An existing virtualenv is reused (it may be a link to a shared one).
venv: $(STAMP)
$(STAMP): $(PY_REQS)
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $(PY_REQS)
	touch $(STAMP)

## checkov, pinned, in its own virtualenv (see CHECKOV_VENV above).
checkov-venv: $(CHECKOV_STAMP)
$(CHECKOV_STAMP): $(CHECKOV_REQS)
	test -x $(CHECKOV_VENV)/bin/python || python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r $(CHECKOV_REQS)
	touch $(CHECKOV_STAMP)

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

## The template gates: cfn-lint clean, the IAM roles SAM generates (no
## Resource "*" beyond actions without resource-level permissions, AUDIT#
## writes denied), and checkov with 0 failed checks (skips are in the
## template, each with its reason; docs/ARCHITECTURE.md, "Deployment and
## security gates").
lint-template: cfn-lint check-policies checkov

cfn-lint: venv
	$(VENV)/bin/cfn-lint template.yaml

check-policies: venv
	$(VENV)/bin/python infra/local/check_policies.py template.yaml

# checkov exits non-zero on any failed check. --skip-download: no call to its
# vendor's API (guideline links), which is not reachable here; no PyPI
# update check either.
checkov: checkov-venv
	CKV_SKIP_PACKAGE_UPDATE_CHECK=true $(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation -f template.yaml

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
## exports of 1M rows to CSV and XLSX (rows/s, peak RSS); export requests,
## the first audit seal and verify on the demo data.
bench: venv
	$(CARGO) build --locked --release -p auth -p admin -p data -p analytics -p reports -p search -p integrations -p compliance -p workflows -p jobs -p streams -p scheduler -p keel-bench
	$(CARGO) run --locked --release -p keel-bench
	$(CARGO) run --locked --release -p keel-bench --bin login
	$(CARGO) run --locked --release -p keel-bench --bin export-bench
	$(CARGO) run --locked --release -p keel-bench --bin demo-latency
	$(CARGO) run --locked --release -p keel-bench --bin analytics-bench
	$(CARGO) run --locked --release -p keel-bench --bin reports-bench
	$(CARGO) run --locked --release -p keel-bench --bin search-bench
	$(CARGO) run --locked --release -p keel-bench --bin backup-bench
	$(CARGO) run --locked --release -p keel-bench --bin webhook-bench
	$(CARGO) run --locked --release -p keel-bench --bin workflow-bench

## Lambda zips for `sam deploy`: target/lambda/<function>/bootstrap.zip, built
## by cargo-lambda with zig as the linker (both pinned PyPI wheels, so nothing
## is downloaded beyond the registries). arm64, as template.yaml deploys,
## needs Rust's aarch64-unknown-linux-gnu standard library (`rustup target add
## aarch64-unknown-linux-gnu`, from rustup's own server, not a registry).
## Without it this builds x86_64 zips and says so: those are for sizes and
## tests, not for deploying this template. `make bench` reports the zips.
lambda: lambda-venv
	@if [ -d "$(ARM64_STD)" ]; then arch=--arm64; \
	else arch=--x86-64; \
	  echo "make lambda: Rust's aarch64-unknown-linux-gnu standard library is not installed" >&2; \
	  echo "  ($(ARM64_STD) is missing; rustup target add aarch64-unknown-linux-gnu installs it)." >&2; \
	  echo "  Building x86_64 zips instead. template.yaml deploys arm64: do not deploy these." >&2; \
	fi; \
	PATH="$(CURDIR)/$(LAMBDA_VENV)/bin:$$PATH" $(LAMBDA_VENV)/bin/cargo-lambda lambda build \
	  --locked --release $$arch --skip-target-check --output-format zip $(addprefix -p ,$(FUNCTIONS))

lambda-venv: $(LAMBDA_STAMP)
$(LAMBDA_STAMP): $(LAMBDA_REQS)
	test -x $(LAMBDA_VENV)/bin/python || python3 -m venv $(LAMBDA_VENV)
	$(LAMBDA_VENV)/bin/pip install --quiet --disable-pip-version-check -r $(LAMBDA_REQS)
	touch $(LAMBDA_STAMP)

clean:
	rm -rf target .keel $(OIDC)/node_modules
