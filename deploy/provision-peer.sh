#!/usr/bin/env bash
# Provision, by hand, the broker user a peer centre publishes into our inbox with, for a
# broker the gateway node has no admin rights on (`crisisgw peers grant` does the same
# when it has them). Run it ON the broker host as a RabbitMQ administrator:
#
#   deploy/provision-peer.sh PEER-ID OUR-CENTRE-ID VHOST [HOST:PORT] > credentials.json
#
# The user PEER@OUR-CENTRE may write to the exchange crisisgw.inbox of VHOST and do
# nothing else (configure "^$", write "^crisisgw\.inbox$", read "^$"). The output is the
# credentials file to hand to the peer out of band; it holds the password.
set -euo pipefail
peer=${1:?peer centre id}; owner=${2:?our centre id}; vhost=${3:?vhost}
endpoint=${4:-$(hostname -f):5671}
user="${peer}@${owner}"
password=$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
if rabbitmqctl -q list_users --no-table-headers | cut -f1 | grep -qx -- "$user"; then
  # the password goes on stdin, never on a command line
  printf '%s\n' "$password" | rabbitmqctl -q change_password "$user" >/dev/null
else
  printf '%s\n' "$password" | rabbitmqctl -q add_user "$user" >/dev/null
fi
rabbitmqctl -q set_permissions -p "$vhost" "$user" '^$' '^crisisgw\.inbox$' '^$'
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
issued=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
# schemas/credentials.schema.json (docs/PROTOCOL.md §15.2)
printf '{"issuer": "%s", "peer": "%s", "user": "%s", "url": "amqps://%s:%s@%s/%s", "issued": "%s"}\n' \
  "$owner" "$peer" "$user" "$(enc "$user")" "$password" "$endpoint" "$(enc "$vhost")" "$issued"
