#!/usr/bin/env bash
# TLS for a centre's RabbitMQ broker: a small CA, the broker's certificate, client
# certificates for RabbitMQ's EXTERNAL mechanism, the TLS listener, and (for tests, the
# demo or a lab) a centre's broker run as its own RabbitMQ node on this machine.
#
#   deploy/broker-tls.sh ca DIR NAME
#       DIR/ca.pem (public: the trust anchor a centre publishes in its identity card)
#       and DIR/private/ca.key (root only). Never overwrites an existing CA.
#   deploy/broker-tls.sh server DIR HOST [HOST ...]
#       DIR/server.pem and DIR/server.key for these DNS names and IP addresses, signed
#       by DIR's CA (a new key each time; run it again to renew, then `reload`).
#   deploy/broker-tls.sh client DIR USER OUT
#       OUT.pem and OUT.key: a client certificate with CN=USER (e.g. NL-NCC@BE-NCCN),
#       for a peer that logs in with EXTERNAL instead of a password.
#   deploy/broker-tls.sh pin CERT
#       the SHA-256 of CERT's public key (SubjectPublicKeyInfo), lower-case hex: the
#       `spki_sha256` trust anchor, an alternative to publishing the CA.
#   deploy/broker-tls.sh listen DIR PORT [ADDRESS]
#       the TLS listener on this machine's own RabbitMQ at ADDRESS:PORT (default
#       127.0.0.1): writes /etc/rabbitmq/conf.d/60-crisisgw-tls.conf for the next boot and
#       starts the listener in the running broker now (no restart).
#   deploy/broker-tls.sh local [PORT]
#       all of the above for this machine's own RabbitMQ (the demo's, and the tests'):
#       CA and certificate (localhost, 127.0.0.1) in /etc/rabbitmq/crisisgw-tls, renewed
#       when less than 30 days are left, and the listener on 127.0.0.1:PORT (5671).
#   deploy/broker-tls.sh node-start DIR NAME PORT DIST_PORT
#       a separate RabbitMQ node NAME@localhost with its data in DIR/node-NAME, a TLS
#       listener on 127.0.0.1:PORT, no plaintext listener, EXTERNAL enabled.
#   deploy/broker-tls.sh node-stop DIR NAME
#   deploy/broker-tls.sh cluster-start DIR NAME BASE_PORT [SIZE]
#       a centre's broker as a cluster of SIZE (3) nodes on this machine, for tests and
#       labs: a CA and certificate in DIR (made if missing), nodes NAME1..NAME3 with
#       their data in DIR/node-NAMEi, AMQPS on 127.0.0.1:BASE_PORT, +2, +4 (Erlang
#       distribution on the port after each), joined to NAME1. Stop each with node-stop.
#   deploy/broker-tls.sh cluster-join NAME SEED
#       make the running node NAME@localhost a member of SEED@localhost's cluster (its
#       own data is reset): three nodes started with node-start and joined to the first
#       are a centre's broker cluster on one machine, for tests and labs; the inbox, a
#       quorum queue, is then replicated on all three.
#   deploy/broker-tls.sh reload [NAME]
#       make a running broker (default: the local one) use renewed certificate files
#       for new connections (ssl:clear_pem_cache); open connections are not touched.
#
# Environment: DAYS (server and client certificate lifetime, default 397), CA_DAYS
# (default 3650). Certificates use ECDSA P-256 and SHA-256; TLS 1.2 and 1.3 only.
set -euo pipefail

DAYS=${DAYS:-397}
CA_DAYS=${CA_DAYS:-3650}
PATH="$PATH:/usr/sbin:/sbin"

die() { printf 'broker-tls.sh: error: %s\n' "$*" >&2; exit 1; }
step() { printf '==> %s\n' "$*" >&2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found (apt-get install $2)"; }

# The broker runs as the user rabbitmq: files it reads must be its own.
broker_owns() {
    if id rabbitmq >/dev/null 2>&1; then chown rabbitmq:rabbitmq "$@"; fi
}

new_key() {  # new_key FILE: an ECDSA P-256 private key, mode 0600
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -out "$1" 2>/dev/null)
}

serial() { printf '0x%s' "$(openssl rand -hex 16)"; }

cmd_ca() {
    local dir=${1:?DIR} name=${2:?NAME}
    need openssl openssl
    mkdir -p "$dir/private"
    chmod 755 "$dir"
    chmod 700 "$dir/private"
    if [[ -s $dir/ca.pem && -s $dir/private/ca.key ]]; then
        step "CA exists: $dir/ca.pem (kept)"
        return 0
    fi
    new_key "$dir/private/ca.key"
    openssl req -x509 -new -key "$dir/private/ca.key" -sha256 -days "$CA_DAYS" \
        -set_serial "$(serial)" -subj "/O=crisisgw/CN=${name} broker CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$dir/ca.pem" 2>/dev/null
    chmod 644 "$dir/ca.pem"
    step "CA made: $dir/ca.pem (key in $dir/private/ca.key)"
}

san_list() {
    local out="" h
    for h in "$@"; do
        if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then out+="${out:+,}IP:$h"; else out+="${out:+,}DNS:$h"; fi
    done
    printf '%s' "$out"
}

sign() {  # sign DIR CSR OUT CN EXTENSIONS
    local dir=$1 csr=$2 out=$3 ext=$5
    openssl x509 -req -in "$csr" -CA "$dir/ca.pem" -CAkey "$dir/private/ca.key" \
        -set_serial "$(serial)" -days "$DAYS" -sha256 \
        -extfile <(printf '%s\n' "$ext") -out "$out" 2>/dev/null
}

cmd_server() {
    local dir=${1:?DIR}; shift
    (($# > 0)) || die "server: name at least one host name or IP address"
    [[ -s $dir/private/ca.key ]] || die "no CA in $dir: run '$0 ca $dir NAME' first"
    local tmp; tmp=$(mktemp -d)
    trap 'rm -rf "${tmp:-}"; trap - RETURN' RETURN
    new_key "$tmp/server.key"
    openssl req -new -key "$tmp/server.key" -subj "/O=crisisgw/CN=$1" -out "$tmp/csr" 2>/dev/null
    sign "$dir" "$tmp/csr" "$tmp/server.pem" "$1" \
        "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyAgreement
extendedKeyUsage=serverAuth
subjectAltName=$(san_list "$@")"
    chmod 644 "$tmp/server.pem"
    broker_owns "$tmp/server.key" "$tmp/server.pem"
    # Replace both files by rename, so a broker never reads a new key with an old cert.
    mv -f "$tmp/server.key" "$dir/server.key"
    mv -f "$tmp/server.pem" "$dir/server.pem"
    step "broker certificate: $dir/server.pem for $(san_list "$@"), valid $DAYS days"
}

cmd_client() {
    local dir=${1:?DIR} user=${2:?USER} out=${3:?OUT}
    [[ -s $dir/private/ca.key ]] || die "no CA in $dir: run '$0 ca $dir NAME' first"
    local tmp; tmp=$(mktemp -d)
    trap 'rm -rf "${tmp:-}"; trap - RETURN' RETURN
    new_key "$out.key"
    openssl req -new -key "$out.key" -subj "/O=crisisgw/CN=$user" -out "$tmp/csr" 2>/dev/null
    sign "$dir" "$tmp/csr" "$out.pem" "$user" \
        "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
    step "client certificate: $out.pem (CN=$user), key $out.key"
}

cmd_pin() {
    local cert=${1:?CERT}
    openssl x509 -in "$cert" -noout -pubkey | openssl pkey -pubin -outform DER \
        | openssl dgst -sha256 -r | cut -d' ' -f1
}


erl_string() { printf '"%s"' "$1"; }

cmd_listen() {
    local dir=${1:?DIR} port=${2:?PORT} address=${3:-127.0.0.1}
    [[ -s $dir/server.pem && -s $dir/server.key ]] || die "no broker certificate in $dir: run '$0 server $dir HOST...'"
    dir=$(cd "$dir" && pwd)
    mkdir -p /etc/rabbitmq/conf.d
    cat >/etc/rabbitmq/conf.d/60-crisisgw-tls.conf <<EOF
# Written by crisis-gateway deploy/broker-tls.sh: the AMQPS listener for peer centres.
listeners.ssl.default = $address:$port
ssl_options.cacertfile = $dir/ca.pem
ssl_options.certfile = $dir/server.pem
ssl_options.keyfile = $dir/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
ssl_options.versions.1 = tlsv1.3
ssl_options.versions.2 = tlsv1.2
# No message beyond the protocol's 512 KiB (plus AMQP properties): a peer cannot make
# the broker hold bigger ones.
max_message_size = 655360
EOF
    chmod 644 /etc/rabbitmq/conf.d/60-crisisgw-tls.conf
    if timeout 3 bash -c "</dev/tcp/$address/$port" >/dev/null 2>&1; then
        step "TLS listener already up on $address:$port (config written for the next boot)"
        return 0
    fi
    local ip; ip=$(printf '%s' "$address" | tr '.' ',')
    rabbitmqctl -q eval "
        Opts = [{cacertfile, $(erl_string "$dir/ca.pem")}, {certfile, $(erl_string "$dir/server.pem")},
                {keyfile, $(erl_string "$dir/server.key")}, {verify, verify_peer},
                {fail_if_no_peer_cert, false}, {versions, ['tlsv1.3', 'tlsv1.2']}],
        application:set_env(rabbit, ssl_options, Opts),
        application:set_env(rabbit, ssl_listeners, [{$(erl_string "$address"), $port}]),
        application:set_env(rabbit, max_message_size, 655360),
        rabbit_networking:start_ssl_listener({{$ip}, $port}, Opts, 10)." >/dev/null \
        || die "could not start the TLS listener in the running broker"
    local i
    for i in $(seq 1 50); do
        timeout 3 bash -c "</dev/tcp/$address/$port" >/dev/null 2>&1 && break
        sleep 0.2
    done
    step "TLS listener started on $address:$port (and configured for the next boot)"
}

cmd_node_start() {
    local dir=${1:?DIR} name=${2:?NAME} port=${3:?PORT} dist=${4:?DIST_PORT}
    [[ -s $dir/server.pem ]] || die "no broker certificate in $dir: run '$0 server $dir HOST...'"
    dir=$(cd "$dir" && pwd)
    local base="$dir/node-$name"
    mkdir -p "$base/mnesia" "$base/log"
    cat >"$base/rabbitmq.conf" <<EOF
listeners.tcp = none
listeners.ssl.default = 127.0.0.1:$port
ssl_options.cacertfile = $dir/ca.pem
ssl_options.certfile = $dir/server.pem
ssl_options.keyfile = $dir/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
ssl_options.versions.1 = tlsv1.3
ssl_options.versions.2 = tlsv1.2
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = AMQPLAIN
auth_mechanisms.3 = EXTERNAL
ssl_cert_login_from = common_name
loopback_users.guest = true
max_message_size = 655360
EOF
    printf '[rabbitmq_auth_mechanism_ssl].\n' >"$base/enabled_plugins"
    broker_owns -R "$base"
    chmod 755 "$dir"
    local node="$name@localhost"
    if rabbitmqctl -q -n "$node" ping >/dev/null 2>&1; then
        step "node $node already running"
        return 0
    fi
    # Started in the background rather than -detached, so a node that cannot boot is
    # noticed at once, with its output, instead of after a timeout.
    local out="$base/log/start.out"
    : >"$out"
    broker_owns "$out"
    (cd "$base" && exec setsid env RABBITMQ_NODENAME="$node" \
        RABBITMQ_DIST_PORT="$dist" RABBITMQ_MNESIA_BASE="$base/mnesia" \
        RABBITMQ_LOG_BASE="$base/log" RABBITMQ_CONFIG_FILE="$base/rabbitmq.conf" \
        RABBITMQ_CONFIG_FILES="$base/conf.d" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins" \
        rabbitmq-server >"$out" 2>&1 </dev/null) &
    local pid=$!
    local deadline=$((SECONDS + ${WAIT_SECS:-120}))
    until rabbitmqctl -q -n "$node" await_startup --timeout 5 >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 15 "$out" >&2 || true
            die "node $node exited while booting (output in $out)"
        fi
        if ((SECONDS > deadline)); then
            tail -n 15 "$out" >&2 || true
            die "node $node did not start within ${WAIT_SECS:-120}s (output in $out)"
        fi
        sleep 1
    done
    step "node $node up: AMQPS on 127.0.0.1:$port only (data in $base)"
}

cmd_cluster_start() {
    local dir=${1:?DIR} name=${2:?NAME} base=${3:?BASE_PORT} size=${4:-3}
    [[ -s $dir/ca.pem ]] || cmd_ca "$dir" "$name broker cluster"
    [[ -s $dir/server.pem ]] || cmd_server "$dir" localhost 127.0.0.1
    local i pids=()
    for ((i = 1; i <= size; i++)); do
        cmd_node_start "$dir" "$name$i" $((base + 2 * (i - 1))) $((base + 2 * (i - 1) + 1)) &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || die "a node of the cluster did not start"; done
    for ((i = 2; i <= size; i++)); do
        cmd_cluster_join "$name$i" "${name}1"
    done
    step "cluster of $size nodes ${name}1..${name}$size up: AMQPS on 127.0.0.1:$base and every second port after"
}

cmd_cluster_join() {
    local name=${1:?NAME} seed=${2:?SEED}
    local node="$name@localhost" leader="$seed@localhost"
    if rabbitmqctl -q -n "$leader" cluster_status --formatter json 2>/dev/null \
            | grep -q "\"$node\""; then
        step "node $node already in $leader's cluster"
        return 0
    fi
    rabbitmqctl -q -n "$node" stop_app >/dev/null
    rabbitmqctl -q -n "$node" reset >/dev/null
    rabbitmqctl -q -n "$node" join_cluster "$leader" >/dev/null
    rabbitmqctl -q -n "$node" start_app >/dev/null
    rabbitmqctl -q -n "$node" await_startup --timeout 60 >/dev/null
    step "node $node joined $leader's cluster"
}

cmd_node_stop() {
    local dir=${1:?DIR} name=${2:?NAME}
    rabbitmqctl -q -n "$name@localhost" stop >/dev/null 2>&1 || true
    step "node $name@localhost stopped (data kept in $dir/node-$name)"
}

LOCAL_DIR=/etc/rabbitmq/crisisgw-tls

cmd_local() {
    local port=${1:-5671}
    cmd_ca "$LOCAL_DIR" "$(hostname -s 2>/dev/null || echo local) local"
    if [[ ! -s $LOCAL_DIR/server.pem ]] \
        || ! openssl x509 -in "$LOCAL_DIR/server.pem" -noout -checkend $((30 * 86400)) >/dev/null; then
        cmd_server "$LOCAL_DIR" localhost 127.0.0.1
        rabbitmqctl -q eval 'ssl:clear_pem_cache().' >/dev/null 2>&1 || true
    fi
    cmd_listen "$LOCAL_DIR" "$port" 127.0.0.1
}

cmd_reload() {
    local name=${1:-}
    local args=()
    [[ -n $name ]] && args=(-n "$name@localhost")
    rabbitmqctl -q "${args[@]}" eval 'ssl:clear_pem_cache().' >/dev/null \
        || die "could not clear the broker's certificate cache"
    step "broker ${name:-local} reads renewed certificate files for new connections"
}

[[ $# -ge 1 ]] || usage
command=$1; shift
case $command in
    ca) cmd_ca "$@" ;;
    server) cmd_server "$@" ;;
    client) cmd_client "$@" ;;
    pin) cmd_pin "$@" ;;
    listen) cmd_listen "$@" ;;
    local) cmd_local "$@" ;;
    node-start) cmd_node_start "$@" ;;
    node-stop) cmd_node_stop "$@" ;;
    cluster-start) cmd_cluster_start "$@" ;;
    cluster-join) cmd_cluster_join "$@" ;;
    reload) cmd_reload "$@" ;;
    -h|--help|help) usage ;;
    *) die "unknown command $command (see $0 --help)" ;;
esac
