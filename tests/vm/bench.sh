#!/bin/sh
# Runs INSIDE a VM: the chain benchmarks (bench/chain_bench.py) and a side-by-side status of
# one chain by xdp-dispatch and by xdp-loader, for the README. Started by scripts/vmbench.sh.
#   bench.sh REPO [--bench chain|apply|linked|all] [bench args]   (default: chain)
# --bench apply runs bench/apply_bench.py (args e.g. --rounds 2 --only new,scale).
set -u
repo=$1
shift
which=chain
if [ "${1:-}" = "--bench" ]; then
    which=${2:-chain}
    shift 2
fi
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
python=$repo/.venv/bin/python
grep -q ' /sys/fs/bpf bpf ' /proc/mounts || mount -t bpf bpf /sys/fs/bpf
. "$repo/tests/vm/stage-python.sh"
cd "$repo" || exit 1
echo "guest: kernel $(uname -r)"
if [ "$which" = apply ]; then
    exec "$python" bench/apply_bench.py "$@"
fi
if [ "$which" = linked ]; then
    exec "$python" bench/linked_bench.py "$@"
fi
ip link add veth0 type veth peer name veth1 && ip link set veth0 up && ip link set veth1 up
"$python" -m dispatcher load veth0 bpf/examples/xdp_counter.o -m skb -p 10
"$python" -m dispatcher load veth0 bpf/examples/xdp_drop_icmp.o bpf/examples/xdp_runcfg.o -m skb
echo '$ xdp-dispatch status veth0'
"$python" -m dispatcher status veth0
echo '$ xdp-loader status veth0'
xdp-loader status veth0
"$python" -m dispatcher unload veth0 --all
ip link del veth0
"$python" bench/chain_bench.py "$@"
if [ "$which" = all ]; then
    "$python" bench/apply_bench.py
fi
