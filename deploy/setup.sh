#!/usr/bin/env bash
# One-shot, idempotent set-up of a development / CI machine for crisis-gateway.
#
#   1. a Python >= 3.11 with a working venv module (Debian: python3-venv)
#   2. RabbitMQ (Debian: rabbitmq-server), started and reachable on 127.0.0.1:5672, with
#      its TLS listener on 127.0.0.1:5671 (deploy/broker-tls.sh local; openssl and curl
#      are installed for it and for the README's examples)
#   3. for the tests only (not with --demo): Chromium and fonts for the browser tests,
#      and PostgreSQL (Debian: postgresql), started, with the tests' role
#      (deploy/start-postgres.sh)
#   4. .venv in the repo root with `pip install -e '.[dev]'`, redone only when
#      pyproject.toml changes (stamp file .venv/.installed-<sha256 of pyproject.toml>)
#
# Safe to run again and again: when everything is in place it only checks and
# returns within a few seconds. Used by deploy/run-tests.sh and deploy/run-demo.sh.
set -euo pipefail

# --demo: what the demo needs; --tests (the default): also Chromium for the browser tests.
PURPOSE=tests
case ${1:-} in
    --demo) PURPOSE=demo ;;
    --tests|"") PURPOSE=tests ;;
    *) printf 'setup.sh: unknown option %s (--demo or --tests)\n' "$1" >&2; exit 2 ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '==> %s\n' "$*"; }
die() { printf 'setup.sh: error: %s\n' "$*" >&2; exit 1; }

# Two set-ups in the same checkout at once (say run-tests.sh and run-demo.sh)
# would otherwise race on apt and pip: serialise them.
if command -v flock >/dev/null 2>&1; then
    LOCK="${TMPDIR:-/tmp}/crisis-gateway-setup-$(printf '%s' "$ROOT" | sha256sum | cut -c1-16).lock"
    exec 9>"$LOCK"
    flock 9
fi

# --- privileges and apt -----------------------------------------------------
SUDO=()
need_root() {
    # Sets SUDO so that "${SUDO[@]}" cmd runs cmd as root; exits if impossible.
    if [[ $(id -u) -eq 0 ]]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        die "need root to install $* but this is not root and sudo is missing.
Install it by hand as root, then run this script again:
    apt-get update && apt-get install -y $*"
    fi
}

APT_UPDATED=0
apt_install() {
    need_root "$*"
    if [[ $APT_UPDATED -eq 0 ]]; then
        step "apt-get update"
        "${SUDO[@]}" apt-get update -q
        APT_UPDATED=1
    fi
    step "apt-get install $*"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

have_apt() { command -v apt-get >/dev/null 2>&1; }

# --- 1. Python >= 3.11 with venv --------------------------------------------
py_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }
# Debian ships ensurepip (needed by `python3 -m venv`) only in python3-venv.
venv_ok() { "$1" -c 'import venv, ensurepip' >/dev/null 2>&1; }

find_python() {
    local c
    for c in python3 python3.13 python3.12 python3.11; do
        if command -v "$c" >/dev/null 2>&1 && py_ok "$c"; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

PY="$(find_python || true)"
if [[ -z $PY ]]; then
    have_apt || die "no Python >= 3.11 found (python3); install one and run again"
    apt_install python3 python3-venv python3-pip
    PY="$(find_python || true)"
    [[ -n $PY ]] || die "python3 from apt is older than 3.11; install Python >= 3.11 (e.g. with pyenv)"
fi
if ! venv_ok "$PY"; then
    have_apt || die "$PY has no working venv module (ensurepip missing); install it and run again"
    apt_install python3-venv python3-pip
    venv_ok "$PY" || die "$PY still cannot create venvs after installing python3-venv
(is $PY not Debian's python3? install its venv/ensurepip support)"
fi
step "python: $PY ($("$PY" -c 'import platform; print(platform.python_version())'))"

# --- 2. RabbitMQ ------------------------------------------------------------
if command -v rabbitmqctl >/dev/null 2>&1 || [[ -x /usr/sbin/rabbitmqctl ]]; then
    step "rabbitmq-server: already installed"
else
    have_apt || die "rabbitmqctl not found and no apt-get: install RabbitMQ (>= 3.10) by hand"
    apt_install rabbitmq-server
fi

# --- 3. start it (or check it is running), with its TLS listener -------------
bash "$ROOT/deploy/start-rabbitmq.sh"
# openssl makes the broker's certificates; curl runs the README's HTTP examples.
missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if ((${#missing[@]})); then
    have_apt || die "${missing[*]} not found and no apt-get: install them by hand"
    apt_install "${missing[@]}"
fi
# Every link of the demo and of the TLS tests is AMQPS to 127.0.0.1:5671, verified
# against the local broker's own CA (/etc/rabbitmq/crisisgw-tls/ca.pem).
need_root "the broker's TLS listener"
"${SUDO[@]}" bash "$ROOT/deploy/broker-tls.sh" local 5671

# --- headless Chromium for the browser tests (tests/browser), not for the demo --
if [[ $PURPOSE == tests ]]; then
# Playwright drives Debian's chromium through executable_path=/usr/bin/chromium;
# `playwright install` (which downloads its own browser build) is never used.
# fonts-dejavu-core gives screenshots readable text. --no-install-recommends
# keeps out chromium's recommends (systemd, udev, avahi-daemon, upower, cups
# helpers...): headless tests need none of them and they are slow to install.
CHROMIUM=/usr/bin/chromium
DEJAVU=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
if [[ -x $CHROMIUM && -f $DEJAVU ]]; then
    step "chromium: already installed ($CHROMIUM)"
else
    have_apt || die "$CHROMIUM (or the DejaVu fonts) not found and no apt-get:
install Chromium and DejaVu fonts by hand so that $CHROMIUM exists"
    apt_install --no-install-recommends chromium fonts-dejavu-core
    [[ -x $CHROMIUM ]] || die "apt installed chromium but $CHROMIUM is still missing"
fi
fi

# --- PostgreSQL for the tests of the PostgreSQL ledger (tests/pg.py) --------------
if [[ $PURPOSE == tests ]]; then
if command -v pg_lsclusters >/dev/null 2>&1 && [[ -d /usr/lib/postgresql ]]; then
    step "postgresql: already installed"
else
    have_apt || die "PostgreSQL not found and no apt-get: install PostgreSQL (>= 13) by hand"
    apt_install postgresql
fi
need_root "PostgreSQL"
"${SUDO[@]}" bash "$ROOT/deploy/start-postgres.sh"
fi

# --- 4. .venv with the project installed --------------------------------------
VENV="$ROOT/.venv"
if [[ -d $VENV ]] && ! { [[ -x $VENV/bin/python ]] && py_ok "$VENV/bin/python"; }; then
    # e.g. the Python it was made from has gone (pyenv version removed).
    step ".venv is broken or too old: recreating it"
    rm -rf "$VENV"
fi
if [[ ! -d $VENV ]]; then
    step "creating .venv with $PY"
    "$PY" -m venv "$VENV"
fi

# Every package comes from deploy/requirements.lock, pinned with its SHA-256 hashes
# (pip refuses anything else), pip and setuptools included; then the project itself,
# without resolving anything more. Regenerate the lock after changing pyproject.toml:
#   pip-compile --extra dev --generate-hashes --allow-unsafe --strip-extras \
#     --no-emit-index-url --no-emit-find-links -o deploy/requirements.lock \
#     deploy/installers.in pyproject.toml
HASH="$(cat pyproject.toml deploy/requirements.lock | sha256sum | cut -d' ' -f1)"
STAMP="$VENV/.installed-$HASH"
if [[ -f $STAMP && -x $VENV/bin/crisisgw ]]; then
    step "python deps: already installed (pyproject.toml and the lock unchanged)"
else
    step "pip install --require-hashes -r deploy/requirements.lock into .venv"
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    "$VENV/bin/python" -m pip install -q --require-hashes --no-deps -r deploy/requirements.lock
    step "pip install -e . (the project, no other package)"
    "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
    rm -f "$VENV"/.installed-*
    touch "$STAMP"
fi

step "setup done"
