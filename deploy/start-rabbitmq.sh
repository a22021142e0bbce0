#!/usr/bin/env bash
# Make sure the local RabbitMQ broker is running and reachable on 127.0.0.1:5672.
#
# - already up (rabbitmqctl status works and the AMQP port accepts): does nothing
# - node up but the rabbit app stopped: waits for it, then `rabbitmqctl start_app`
# - not running: `systemctl start rabbitmq-server` when systemd is PID 1,
#   otherwise `rabbitmq-server -detached`; then waits up to WAIT_SECS for it.
# Never stops or restarts a running broker. Exits non-zero with a message if the
# broker cannot be brought up.
set -euo pipefail

HOST=127.0.0.1
PORT="${RABBITMQ_NODE_PORT:-5672}"  # RabbitMQ's own variable for the AMQP port
WAIT_SECS="${RABBITMQ_WAIT_SECS:-60}"
START_LOG="${TMPDIR:-/tmp}/crisis-gateway-rabbitmq-start.log"

step() { printf '==> %s\n' "$*"; }
die() { printf 'start-rabbitmq.sh: error: %s\n' "$*" >&2; exit 1; }

PATH="$PATH:/usr/sbin:/sbin"
command -v rabbitmqctl >/dev/null 2>&1 \
    || die "rabbitmqctl not found: install RabbitMQ first (deploy/setup.sh does, via apt-get install rabbitmq-server)"

# Debian's rabbitmqctl / rabbitmq-server only work as root or as user rabbitmq.
AS_ROOT=()
if [[ $(id -u) -ne 0 && $(id -un) != rabbitmq ]]; then
    command -v sudo >/dev/null 2>&1 \
        || die "run this as root (or install sudo): rabbitmqctl and rabbitmq-server need root"
    AS_ROOT=(sudo)
fi

port_open() { timeout 3 bash -c "</dev/tcp/$HOST/$PORT" >/dev/null 2>&1; }
node_up() { timeout 20 "${AS_ROOT[@]}" rabbitmqctl -q ping >/dev/null 2>&1; }
# A running node whose status report fails has a crashed internal process (seen: the
# memory monitor); restarting the rabbit application repairs it.
healthy() { timeout 30 "${AS_ROOT[@]}" rabbitmqctl status >/dev/null 2>&1; }

# Wait until the AMQP port accepts and the node answers, at most WAIT_SECS.
wait_ready() {
    local deadline=$((SECONDS + WAIT_SECS))
    while ((SECONDS < deadline)); do
        if port_open && node_up; then
            return 0
        fi
        sleep 2
    done
    return 1
}

if port_open && node_up; then
    if ! healthy; then
        step "rabbitmq: running but 'rabbitmqctl status' fails; restarting the rabbit app"
        if ! { timeout 120 "${AS_ROOT[@]}" rabbitmqctl stop_app >/dev/null &&
               timeout 120 "${AS_ROOT[@]}" rabbitmqctl start_app >/dev/null; }; then
            die "could not restart the rabbit application"
        fi
        timeout 60 "${AS_ROOT[@]}" rabbitmqctl await_startup >/dev/null 2>&1 || true
    fi
    step "rabbitmq: already running, $HOST:$PORT accepts connections"
    exit 0
fi

if node_up; then
    # The Erlang node is there but AMQP is not (still booting, or app stopped).
    step "rabbitmq: node is up but $HOST:$PORT is closed; waiting for it to finish booting"
    timeout 30 "${AS_ROOT[@]}" rabbitmqctl await_startup >/dev/null 2>&1 || true
    if ! port_open; then
        step "rabbitmq: starting the rabbit app (rabbitmqctl start_app)"
        timeout 60 "${AS_ROOT[@]}" rabbitmqctl start_app \
            || die "rabbitmqctl start_app failed"
    fi
elif port_open; then
    # Something listens on 5672 but rabbitmqctl cannot talk to a node. Give a
    # booting node a moment before calling it a problem; starting a second
    # broker would only fail on the taken port.
    step "rabbitmq: $HOST:$PORT is open but rabbitmqctl gets no answer; waiting"
    wait_ready || die "$HOST:$PORT is open but 'rabbitmqctl ping' keeps failing.
Is another program (or a broker rabbitmqctl cannot reach, e.g. in a container or
with another Erlang cookie) on port $PORT? See: rabbitmqctl ping"
else
    if [[ -d /run/systemd/system ]] && [[ "$(ps -p 1 -o comm= 2>/dev/null)" == systemd ]] \
        && command -v systemctl >/dev/null 2>&1; then
        step "rabbitmq: not running; systemctl start rabbitmq-server"
        "${AS_ROOT[@]}" systemctl start rabbitmq-server \
            || die "systemctl start rabbitmq-server failed; see: journalctl -u rabbitmq-server"
    else
        step "rabbitmq: not running; rabbitmq-server -detached (no systemd), log: $START_LOG"
        # -detached returns at once; readiness is checked below.
        if ! "${AS_ROOT[@]}" rabbitmq-server -detached >"$START_LOG" 2>&1; then
            cat "$START_LOG" >&2 || true
            die "rabbitmq-server -detached failed"
        fi
    fi
fi

step "rabbitmq: waiting up to ${WAIT_SECS}s for $HOST:$PORT"
# await_startup fails at once while the node is not yet registered, so poll.
deadline=$((SECONDS + WAIT_SECS))
while ((SECONDS < deadline)); do
    if timeout 15 "${AS_ROOT[@]}" rabbitmqctl await_startup --timeout 10 >/dev/null 2>&1 && port_open; then
        break
    fi
    sleep 2
done

if port_open && node_up; then
    step "rabbitmq: started, $HOST:$PORT accepts connections"
    exit 0
fi

for f in "$START_LOG" /var/log/rabbitmq/startup_err /var/log/rabbitmq/startup_log; do
    if [[ -s $f ]]; then
        echo "--- $f:" >&2
        tail -n 30 "$f" >&2 || true
    fi
done
die "RabbitMQ did not come up on $HOST:$PORT within ${WAIT_SECS}s.
Check: rabbitmqctl status; logs in /var/log/rabbitmq/"
