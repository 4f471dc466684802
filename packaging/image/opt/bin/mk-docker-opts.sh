#!/bin/sh
# mk-docker-opts.sh: Docker daemon options from flannel's subnet.env, with flannel's options and
# output: DOCKER_OPT_BIP="--bip=<FLANNEL_SUBNET>", DOCKER_OPT_IPMASQ="--ip-masq=<not
# FLANNEL_IPMASQ>", DOCKER_OPT_MTU="--mtu=<FLANNEL_MTU>" (plus any DOCKER_OPT_* already in the
# environment), each on its own line and/or combined as DOCKER_OPTS=" …".

usage() {
  cat >&2 <<USAGE
$0 [-f FLANNEL-ENV-FILE] [-d DOCKER-ENV-FILE] [-i] [-c] [-m] [-k COMBINED-KEY]

Generate Docker daemon options based on flannel env file
OPTIONS:
	-f	Path to flannel env file. Defaults to /run/flannel/subnet.env
	-d	Path to Docker env file to write to. Defaults to /run/docker_opts.env
	-i	Output each Docker option as individual var. e.g. DOCKER_OPT_MTU=1500
	-c	Output combined Docker options into DOCKER_OPTS var
	-k	Set the combined options key to this value (default DOCKER_OPTS=)
	-m	Do not output --ip-masq (useful for older Docker version)
USAGE
  exit 1
}

env_file=/run/flannel/subnet.env
out_file=/run/docker_opts.env
key=DOCKER_OPTS
each=false
combined=false
with_masq=true
while getopts "f:d:icmk:?h" opt; do
  case $opt in
    f) env_file=$OPTARG ;;
    d) out_file=$OPTARG ;;
    i) each=true ;;
    c) combined=true ;;
    m) with_masq=false ;;
    k) key=$OPTARG ;;
    *) usage ;;
  esac
done
if [ "$each" = false ] && [ "$combined" = false ]; then
  each=true
  combined=true
fi

# shellcheck disable=SC1090
[ -f "$env_file" ] && . "$env_file"

[ -n "${FLANNEL_SUBNET:-}" ] && DOCKER_OPT_BIP="--bip=$FLANNEL_SUBNET"
[ -n "${FLANNEL_MTU:-}" ] && DOCKER_OPT_MTU="--mtu=$FLANNEL_MTU"
if [ -n "${FLANNEL_IPMASQ:-}" ] && [ "$with_masq" = true ]; then
  # flannel masquerades already: Docker must not, and the other way round.
  case $FLANNEL_IPMASQ in
    true) DOCKER_OPT_IPMASQ="--ip-masq=false" ;;
    false) DOCKER_OPT_IPMASQ="--ip-masq=true" ;;
    *)
      echo "Invalid value of FLANNEL_IPMASQ: $FLANNEL_IPMASQ" >&2
      exit 1
      ;;
  esac
fi

# The combined value starts from the key's current value (e.g. DOCKER_OPTS from the environment).
eval "combined_value=\${$key:-}"
[ -n "$combined_value" ] && combined_value="$combined_value "

: >"$out_file"
for name in $(set | sed -n 's/^\(DOCKER_OPT_[A-Za-z0-9_]*\)=.*/\1/p' | sort -u); do
  eval "value=\$$name"
  [ "$each" = true ] && echo "$name=\"$value\"" >>"$out_file"
  combined_value="$combined_value $value"
done
[ "$combined" = true ] && echo "$key=\"$combined_value\"" >>"$out_file"

# As flannel's: refuse when the routing table already routes this subnet via a gateway.
if [ -n "${FLANNEL_SUBNET:-}" ]; then
  address=${FLANNEL_SUBNET%/*}
  network="${address%.*}.$((${address##*.} - 1))/${FLANNEL_SUBNET#*/}"
  conflict=$(ip route show | grep "$network" | grep via)
  if [ -n "$conflict" ]; then
    echo "Your routing table already contains the subnet: $conflict" >&2
    exit 1
  fi
fi
exit 0
