#!/usr/bin/env bash
# Sets up the machine's RabbitMQ for federated config servers (docs/federation.md), idempotently:
# the federation plugin; one vhost per site standing for one cloud's broker; per site a broker user
# for its config server (names ^nodeset\. only, on its own vhost only) and a link user the other
# vhost's federation upstream connects as; each vhost federates the other's `nodeset.*` exchanges
# (max-hops 1, ack-mode on-confirm). Test-only credentials (password: the user name and "-pw") on loopback.
#
#   scripts/broker-setup.sh                 # the sites inside/outside (examples) and fed-a/fed-b (tests)
#   scripts/broker-setup.sh SITE SITE       # one federated pair of your own, vhosts nodeset-SITE
#
# Run as root (rabbitmqctl talks to the local node through its Erlang cookie).
set -euo pipefail

BROKER_HOST=${NODESET_BROKER_HOST:-127.0.0.1}
BROKER_PORT=${NODESET_BROKER_PORT:-5672}
# What a server's user may touch: its deployments' exchange and queue, nothing else.
OWN='^nodeset\.'
# What a federation link declares on the upstream vhost: its upstream queue and exchange.
LINK='^(nodeset\.|federation: nodeset\.)'
# An upstream queue a link stopped using (a deleted deployment) goes after a day; a link down longer
# than that loses what waited in it, and the config servers' catch-up fills the hole.
UPSTREAM_EXPIRES_MS=86400000

ctl() { rabbitmqctl -q "$@"; }

has_vhost() { ctl list_vhosts name | grep -qxF "$1"; }
has_user() { ctl list_users | awk '{print $1}' | grep -qxF "$1"; }

site() {
  local name=$1 vhost="nodeset-$1"
  has_vhost "$vhost" || ctl add_vhost "$vhost"
  for user in "nodeset-$name" "nodeset-$name-link"; do
    if has_user "$user"; then ctl change_password "$user" "$user-pw"; else ctl add_user "$user" "$user-pw"; fi
  done
  ctl set_permissions -p "$vhost" "nodeset-$name" "$OWN" "$OWN" "$OWN"
  ctl set_permissions -p "$vhost" "nodeset-$name-link" "$LINK" "$LINK" "$LINK"
  # The tests read the exchange and forge messages as the broker's administrator.
  if has_user guest; then ctl set_permissions -p "$vhost" guest '.*' '.*' '.*'; fi
  ctl set_policy -p "$vhost" nodeset-federation '^nodeset\.' '{"federation-upstream-set":"all"}' \
    --apply-to exchanges --priority 0
}

# $1's vhost takes the exchanges of $2's vhost as upstream, connecting as $2's link user.
upstream() {
  local downstream=$1 up=$2
  local uri="amqp://nodeset-$up-link:nodeset-$up-link-pw@$BROKER_HOST:$BROKER_PORT/nodeset-$up"
  ctl set_parameter -p "nodeset-$downstream" federation-upstream "nodeset-$up" \
    "{\"uri\":\"$uri\",\"max-hops\":1,\"ack-mode\":\"on-confirm\",\"reconnect-delay\":1,\"expires\":$UPSTREAM_EXPIRES_MS}"
}

pair() {
  site "$1"
  site "$2"
  upstream "$1" "$2"
  upstream "$2" "$1"
}

command -v rabbitmqctl >/dev/null || {
  echo 'rabbitmqctl not found: install rabbitmq-server' >&2
  exit 1
}
rabbitmq-plugins -q enable rabbitmq_federation >/dev/null
if [ $# -eq 2 ]; then
  pair "$1" "$2"
elif [ $# -eq 0 ]; then
  pair inside outside
  pair fed-a fed-b
else
  echo "usage: $0 [SITE SITE]" >&2
  exit 2
fi
echo "broker ready: vhosts $(ctl list_vhosts name | grep '^nodeset-' | tr '\n' ' ')"
