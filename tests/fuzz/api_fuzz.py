#!/usr/bin/env python3
"""`make api-fuzz`: schemathesis against the OpenAPI document a local stack serves.

Starts `keel-local` (already built: target/debug/keel-local) on a free port
with a small demo data set, signs in as its super admin (enrolling TOTP 2FA,
then answering the sign-in challenge with one of the recovery codes, so there
is no wait for the next 30-second TOTP step), runs `schemathesis run` with the
admin's bearer token and stops the stack. Exits non-zero on any failure.

Run with the schemathesis virtualenv's Python (it has pyotp too); the stack's
own emulator runs from .keel/venv as for `make dev`.

Environment: KEEL_FUZZ_EXAMPLES (default 10) examples per operation,
KEEL_FUZZ_WORKERS (default 2), KEEL_FUZZ_SEED (random by default; printed),
KEEL_FUZZ_ARGS extra schemathesis arguments (e.g. "--include-path-regex users").
"""

import json
import os
import random
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyotp

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".keel" / "api-fuzz"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"

CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
])

# Operations left out, each with why it cannot work here. Everything else in
# the document is fuzzed.
EXCLUDED = [
    # The OAuth callbacks need a configured provider and a real authorization
    # response (state, PKCE, the provider's token endpoint); with none
    # configured every call is the same 404. tests/api/oauth.rs drives them
    # against a real OpenID provider instead.
    ("--exclude-path-regex", r"^/api/v1/auth/oauth/\{provider\}/callback$"),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, body=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        raise SystemExit(f"api-fuzz: sign-in step {method} {path} answered {e.code}: {e.read().decode(errors='replace')}")


def sign_in(base, email, password):
    """The admin's first sign-in (enrolment only), 2FA enrolment, then a full sign-in."""
    _, tokens = call(base, "POST", "/api/v1/auth/login", {"email": email, "password": password})
    enrolment_token = tokens["access_token"]
    _, enrolment = call(base, "POST", "/api/v1/auth/2fa/enable", {}, enrolment_token)
    code = pyotp.TOTP(enrolment["secret"]).now()
    _, enrolled = call(base, "POST", "/api/v1/auth/2fa/verify", {"code": code}, enrolment_token)
    _, challenge = call(base, "POST", "/api/v1/auth/login", {"email": email, "password": password})
    _, tokens = call(base, "POST", "/api/v1/auth/2fa/verify", {"challenge_token": challenge["challenge_token"], "code": enrolled["recovery_codes"][0]})
    return tokens["access_token"]


def start_stack(port, email, password):
    STATE.mkdir(parents=True, exist_ok=True)
    log_path = STATE / "keel-local.log"
    env = dict(os.environ, KEEL_PORT=str(port), KEEL_DEMO_USERS=os.environ.get("KEEL_FUZZ_DEMO_USERS", "50"),
               KEEL_ADMIN_EMAIL=email, KEEL_ADMIN_PASSWORD=password, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    log = open(log_path, "w")
    # The binary `make api-fuzz` just built: KEEL_LOCAL_BIN, else under
    # CARGO_TARGET_DIR (a shared target directory), else ./target.
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    binary = os.environ.get("KEEL_LOCAL_BIN") or str(target / "debug/keel-local")
    stack = subprocess.Popen([binary], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if stack.poll() is not None:
            raise SystemExit(f"api-fuzz: keel-local exited ({stack.returncode}); see {log_path}:\n{log_path.read_text()[-3000:]}")
        if "Keel is running at" in log_path.read_text():
            return stack
        time.sleep(1)
    stop_stack(stack)
    raise SystemExit(f"api-fuzz: keel-local did not start within 10 minutes; see {log_path}")


def stop_stack(stack):
    if stack.poll() is None:
        stack.send_signal(signal.SIGINT)  # keel-local stops moto on Ctrl-C
        try:
            stack.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stack.kill()
            stack.wait()


def main():
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    email, password = "fuzz-admin@keel.local", secrets.token_urlsafe(24)
    started = time.monotonic()
    stack = start_stack(port, email, password)
    try:
        print(f"api-fuzz: local stack at {base} ready in {time.monotonic() - started:.0f} s")
        token = sign_in(base, email, password)
        seed = os.environ.get("KEEL_FUZZ_SEED") or str(random.randrange(2**31))
        command = [
            str(SCHEMATHESIS), "--no-color", "run", f"{base}/api/v1/openapi.json",
            "--header", f"Authorization: Bearer {token}",
            "--checks", CHECKS,
            # No stateful phase: the document declares no OpenAPI links, and
            # the ones schemathesis 4.32 infers are invalid (it maps the 202
            # of POST /data/export/gdpr, which holds job_id and request_id,
            # onto GET /data/requests/{request_id} with a job_id parameter)
            # and make the run error out without testing anything.
            "--phases", "examples,coverage,fuzzing",
            "--max-examples", os.environ.get("KEEL_FUZZ_EXAMPLES", "10"),
            "--workers", os.environ.get("KEEL_FUZZ_WORKERS", "2"),
            "--seed", seed,
            "--request-timeout", "30",
            "--report", "junit", "--report-dir", str(STATE / "report"),
        ]
        for flag, value in EXCLUDED:
            command += [flag, value]
        command += shlex.split(os.environ.get("KEEL_FUZZ_ARGS", ""))
        shown = [("Authorization: Bearer …" if a.startswith("Authorization:") else a) for a in command]
        print("api-fuzz:", shlex.join(shown), flush=True)
        fuzz_started = time.monotonic()
        # From .keel/api-fuzz: schemathesis keeps its example database in ./.schemathesis.
        result = subprocess.run(command, cwd=STATE)
        print(f"api-fuzz: schemathesis exited {result.returncode} after {time.monotonic() - fuzz_started:.0f} s (seed {seed})")
        return result.returncode
    finally:
        stop_stack(stack)


if __name__ == "__main__":
    sys.exit(main())
