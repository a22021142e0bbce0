#!/usr/bin/env bash
# Provision, by hand, a node's own vhost and user on a broker the node has no admin
# rights on (`crisisgw init` does the same when it has them). Run ON the broker host as
# a RabbitMQ administrator, then give the node the URL it prints:
#
#   deploy/provision-node.sh CENTRE-ID [VHOST] [HOST:PORT]
#
# The node's user may configure, write and read only resources named crisisgw.* in its
# vhost; the node declares its inbox exchange and quorum queue itself at start.
set -euo pipefail
centre=${1:?centre id}; vhost=${2:-crisisgw-$(tr '[:upper:]' '[:lower:]' <<<"$centre")}
endpoint=${3:-$(hostname -f):5671}
password=$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
rabbitmqctl -q list_vhosts --no-table-headers | grep -qx -- "$vhost" \
  || rabbitmqctl -q add_vhost "$vhost" --default-queue-type quorum
if rabbitmqctl -q list_users --no-table-headers | cut -f1 | grep -qx -- "$centre"; then
  printf '%s\n' "$password" | rabbitmqctl -q change_password "$centre" >/dev/null
else
  printf '%s\n' "$password" | rabbitmqctl -q add_user "$centre" >/dev/null
fi
rabbitmqctl -q set_permissions -p "$vhost" "$centre" '^crisisgw\..*' '^crisisgw\..*' '^crisisgw\..*'
echo "amqps://${centre}:${password}@${endpoint}/${vhost}"
