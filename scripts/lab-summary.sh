#!/usr/bin/env bash
# Prints what works in the podman lab: hosts, pods (network namespaces on the nodes), routes
# beyond the connected subnets, and pings that must succeed (node to node, node to the internet
# host, pod to pod across nodes, pod to the internet host) or must fail (the internet host to a
# pod). Exit status 1 if any ping did not do what it should.
#
# It reads the lab from podman (containers labelled podnet.lab=$PODNET_LAB by lab/up.yml), not
# from the inventory, so it also works half-way through a converge. The roles engineer extends
# the checks as features land (services, VIPs, BGP): add a section, use expect_ping.
#
# Usage: scripts/lab-summary.sh            (PODNET_LAB selects the lab, default podnet)
set -uo pipefail
LAB=${PODNET_LAB:-podnet}

declare -A CONTAINER IP GROUPS_OF
HOSTS=()
while read -r host container ip groups; do
  HOSTS+=("$host")
  CONTAINER[$host]=$container
  IP[$host]=$ip
  GROUPS_OF[$host]=$groups
done < <(podman ps --filter "label=podnet.lab=$LAB" --format \
  '{{ index .Labels "podnet.lab.host" }} {{ .Names }} {{ index .Labels "podnet.lab.ip" }} {{ index .Labels "podnet.lab.groups" }}' |
  sort)

if ((${#HOSTS[@]} == 0)); then
  echo "lab '$LAB' is not running (scripts/lab.sh up)"
  exit 1
fi

in_group() { [[ ,${GROUPS_OF[$1]}, == *,$2,* ]]; }
on() { local h=$1; shift; podman exec "${CONTAINER[$h]}" "$@"; }
section() { printf '\n== %s\n' "$*"; }

NODES=() INET=""
for h in "${HOSTS[@]}"; do
  in_group "$h" nodes && NODES+=("$h")
  in_group "$h" internet && INET=$h
done

ok=0 bad=0
# expect_ping ok|fail LABEL HOST [NETNS] ADDRESS
expect_ping() {
  local want=$1 label=$2 h=$3 ns=$4 addr=$5 got verdict
  local cmd=(ping -n -q -c 1 -W 1 "$addr")
  [[ -n $ns ]] && cmd=(ip netns exec "$ns" "${cmd[@]}")
  if on "$h" "${cmd[@]}" >/dev/null 2>&1; then got=ok; else got=fail; fi
  if [[ $got == "$want" ]]; then verdict=yes; ok=$((ok + 1)); else verdict=NO; bad=$((bad + 1)); fi
  printf '  %-58s %-14s %-5s (as expected: %s)\n' "$label" "$addr" "$got" "$verdict"
}

section "lab '$LAB': hosts"
printf '  %-8s %-22s %-10s %s\n' HOST GROUPS SYSTEMD ADDRESSES
for h in "${HOSTS[@]}"; do
  state=$(on "$h" systemctl is-system-running 2>/dev/null)
  addrs=$(on "$h" ip -4 -o addr show scope global | sort -k2 | awk '{ printf "%s%s %s", sep, $2, $4; sep = ", " }')
  groups=$(tr , '\n' <<<"${GROUPS_OF[$h]}" | grep -vx lab | paste -sd, -)
  printf '  %-8s %-22s %-10s %s\n' "$h" "$groups" "${state:-?}" "$addrs"
done

section "pods (network namespaces on the nodes)"
declare -A POD_IP POD_NODE
PODS=()
for n in "${NODES[@]}"; do
  # shellcheck disable=SC2016  # the inner script is expanded inside the container
  while read -r ns ifname cidr; do
    [[ -n $ns ]] || continue
    PODS+=("$ns@$n")
    POD_IP[$ns@$n]=${cidr%/*}
    POD_NODE[$ns@$n]=$n
    printf '  %-8s %-24s %s %s\n' "$n" "$ns" "$ifname" "$cidr"
  done < <(on "$n" sh -c 'for ns in $(ip netns list | cut -d" " -f1); do
      ip -n "$ns" -4 -o addr show scope global | awk -v ns="$ns" "{ print ns, \$2, \$4 }"
    done')
done
((${#PODS[@]})) || echo "  (none yet)"

section "routes beyond the connected subnets"
for h in "${HOSTS[@]}"; do
  on "$h" ip -4 route show | grep -v 'proto kernel' | sed "s/ *$//; s/^/  $(printf '%-8s' "$h") /"
done

section "pings"
for a in "${NODES[@]}"; do
  for b in "${NODES[@]}"; do
    [[ $a == "$b" ]] || expect_ping ok "node $a -> node $b" "$a" "" "${IP[$b]}"
  done
  [[ -z $INET ]] || expect_ping ok "node $a -> $INET" "$a" "" "${IP[$INET]}"
done
# Every pod to the first pod of each other node, and to the internet host.
declare -A FIRST_POD
for p in "${PODS[@]}"; do
  [[ -n ${FIRST_POD[${POD_NODE[$p]}]:-} ]] || FIRST_POD[${POD_NODE[$p]}]=$p
done
for p in "${PODS[@]}"; do
  for n in "${!FIRST_POD[@]}"; do
    q=${FIRST_POD[$n]}
    [[ $n == "${POD_NODE[$p]}" ]] ||
      expect_ping ok "pod $p -> pod $q" "${POD_NODE[$p]}" "${p%@*}" "${POD_IP[$q]}"
  done
  [[ -z $INET ]] || expect_ping ok "pod $p -> $INET" "${POD_NODE[$p]}" "${p%@*}" "${IP[$INET]}"
done
# The internet host knows the rack segments only: pods must stay unreachable from it.
if [[ -n $INET ]]; then
  for n in "${!FIRST_POD[@]}"; do
    q=${FIRST_POD[$n]}
    expect_ping fail "$INET -> pod $q (must not reach)" "$INET" "" "${POD_IP[$q]}"
  done
fi

section "$ok pings as expected, $bad not"
((bad == 0))
