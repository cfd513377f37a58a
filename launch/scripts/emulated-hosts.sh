#!/bin/bash
# Emulated hosts on one machine (as root): network namespaces NAME-h1..hN, each
# with an interface eth0 (10.203.0.I/24) joined by a bridge that lives in its
# own namespace NAME-br; `tc tbf` limits every link to RATE in both
# directions. Nothing touches the machine's own namespace: never connect to
# 10.203.0.x from outside (such packets would leave by the default route).
#
#   emulated-hosts.sh up NAME N [RATE]   create (RATE e.g. 1gbit; none: no limit)
#   emulated-hosts.sh down NAME          remove everything NAME made
#   emulated-hosts.sh cut NAME I         take host I's link down
#   emulated-hosts.sh mpirun NAME ARGS   run mpirun inside NAME-h1, launching into
#                                        the hosts through launch/netns-rsh
# Host I is known to every host as NAME-hI (an /etc/netns/NAME-hI/hosts file).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?usage: emulated-hosts.sh up|down|cut|mpirun NAME ...}
name=${2:?NAME}

down() {
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^${name}-(br|h[0-9]+)$" || true); do
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
}

case "$cmd" in
up)
  n=${3:?N}
  rate=${4:-none}
  down
  trap 'down' ERR
  ip netns add "$name-br"
  ip -n "$name-br" link add br0 type bridge
  ip -n "$name-br" link set br0 up
  ip -n "$name-br" link set lo up
  hosts="127.0.0.1 localhost"$'\n'
  for i in $(seq 1 "$n"); do hosts+="10.203.0.$i $name-h$i"$'\n'; done
  for i in $(seq 1 "$n"); do
    h="$name-h$i"
    ip netns add "$h"
    ip link add "v$i-$$" netns "$name-br" type veth peer name eth0 netns "$h"
    ip -n "$name-br" link set "v$i-$$" master br0 up
    ip -n "$h" addr add "10.203.0.$i/24" dev eth0
    ip -n "$h" link set eth0 up
    ip -n "$h" link set lo up
    if [ "$rate" != none ]; then
      ip netns exec "$h" tc qdisc add dev eth0 root tbf rate "$rate" burst 128kb latency 50ms
      ip netns exec "$name-br" tc qdisc add dev "v$i-$$" root tbf rate "$rate" burst 128kb latency 50ms
    fi
    mkdir -p "/etc/netns/$h"
    printf '%s' "$hosts" > "/etc/netns/$h/hosts"
  done
  ;;
down)
  down
  ;;
cut)
  ip -n "$name-h${3:?I}" link set eth0 down
  ;;
mpirun)
  shift 2
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  exec ip netns exec "$name-h1" mpirun --mca plm_rsh_agent "$here/../netns-rsh" \
    --mca plm_rsh_no_tree_spawn 1 --mca oob_tcp_if_include eth0 --mca btl_tcp_if_include eth0 \
    --mca btl tcp,self "$@"
  ;;
*)
  echo "emulated-hosts.sh: unknown command $cmd" >&2
  exit 2
  ;;
esac
