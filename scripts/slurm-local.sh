#!/usr/bin/env bash
# A real SLURM cluster on this machine, for the SLURM tests and for trying the slurm profile: one node, or two.
#
#   scripts/slurm-local.sh install            # Debian's slurmctld, slurmd, slurm-client and munge (as root)
#   scripts/slurm-local.sh start [--nodes 2]  # install if needed, write the config, start the daemons, wait for the node(s)
#   scripts/slurm-local.sh status [--nodes 2] # daemons and node states; exit 0 when the node(s) take jobs
#   scripts/slurm-local.sh stop [--nodes 2]   # stop the daemons (munged too, unless the other cluster still runs)
#
# Every subcommand is safe to run twice. The single node is this machine as `slurmd -C` describes it, with
# $SLURM_LOCAL_GPUS (default 2) fake GPUs: character devices, so jobs can request `--gpus` and get
# CUDA_VISIBLE_DEVICES, while CUDA itself sees no GPU. No accounting database: `sacct` does not work,
# so the profile polls with squeue (MinJobAge keeps finished jobs visible to it for 5 minutes).
# Debian 12 packages (SLURM 22.05); needs root and apt; no init system needed (daemons are started by hand).
#
# --nodes 2: a second, separate cluster of two compute nodes, tpnode1 and tpnode2 (no GPUs), beside the single-node
# one (both can run at once). slurmctld (host tpctl) and each slurmd run in a network and UTS namespace of their own
# (`ip netns`, named like the hosts), each with its own hostname and address on a private bridge, tpslurm0, that
# this script creates and removes: $SLURM_LOCAL_SUBNET.1 is this machine (the login node), .10 the controller, .11
# and .12 the nodes. Nothing is routed beyond the bridge. Each host's /etc/hosts (/etc/netns/<host>/hosts) names
# all hosts, as a cluster's DNS would. The nodes share this machine's filesystem, as cluster nodes share a disk.
# Its config is /etc/slurm-two-nodes/slurm.conf, which its hosts see as /etc/slurm/slurm.conf (so a job step that
# clears the SLURM_* variables still finds its cluster); on this machine point the SLURM commands at it with
# SLURM_CONF=/etc/slurm-two-nodes/slurm.conf (`start` prints it). `stop --nodes 2` ends every process left on
# its hosts and removes the namespaces, the bridge, the per-host files and the cluster's state; the daemons'
# logs stay in /var/log/slurm-local/two-nodes. Needs root and a kernel with network namespaces, veth and bridges.
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin  # the daemons live in sbin

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
GRES_CONF=$CONF_DIR/gres.conf
MARKER="# written by tunepipe scripts/slurm-local.sh"
RUN_DIR=/run/slurm-local
STATE_DIR=/var/lib/slurm-local
LOG_DIR=/var/log/slurm-local
MUNGE_PID=/run/munge/munged.pid
CTLD_PID=$RUN_DIR/slurmctld.pid
SLURMD_PID=$RUN_DIR/slurmd.pid
GPUS=${SLURM_LOCAL_GPUS:-2}
MEM_MB=${SLURM_LOCAL_MEM_MB:-65536}
WAIT_SECONDS=${SLURM_LOCAL_WAIT:-60}
PACKAGES=(slurmctld slurmd slurm-client munge)
CONFIG_CHANGED=0
# The two-node cluster (--nodes 2): its own config, state, logs and pid files, and its own network.
TWO_CONF_DIR=/etc/slurm-two-nodes  # mounted over /etc/slurm on its hosts, as a node of that cluster has it
TWO_CONF=$TWO_CONF_DIR/slurm.conf
TWO_RUN_DIR=$RUN_DIR/two-nodes
TWO_STATE_DIR=$STATE_DIR/two-nodes
TWO_LOG_DIR=$LOG_DIR/two-nodes
SUBNET=${SLURM_LOCAL_SUBNET:-10.226.26}  # a /24 of private addresses that only the bridge below uses
BRIDGE=tpslurm0
CONTROLLER=tpctl
NODES=(tpnode1 tpnode2)

say() { echo "slurm-local: $*" >&2; }
die() { say "error: $*"; exit 1; }
need_root() { [[ $(id -u) == 0 ]] || die "must run as root (it installs packages and starts system daemons)"; }
# One start or stop at a time, for both clusters: they share munged (the tests may start both at once). Every daemon
# is started with fd 9 closed: one that inherited it would hold the lock for as long as it lives (a later stop hangs).
lock() {
    install -d "$RUN_DIR"
    exec 9>"$RUN_DIR/.lock"
    flock 9
}

# The slurm.conf settings both clusters share.
scheduler_settings() {
    cat <<'EOF'
SlurmUser=root
AuthType=auth/munge
# No cgroups in containers: track processes by parent pid, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
ReturnToService=2
SlurmdParameters=config_overrides
# Finished jobs stay visible to squeue for 5 minutes: the profile polls with squeue (no sacct without slurmdbd).
MinJobAge=300
KillWait=10
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
EOF
}

installed() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null && [[ -s /etc/munge/munge.key ]]
}

cmd_install() {
    need_root
    if installed; then
        say "already installed ($(slurmctld -V))"
        return
    fi
    command -v apt-get >/dev/null || die "apt-get not found: this script supports Debian/Ubuntu only"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine has empty package lists; otherwise try the lists we have first.
    if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null \
        || ! apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then  # the package creates it; some images skip maintainer scripts
        install -d -o munge -g munge -m 0700 /etc/munge
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    installed || die "installation finished but slurmctld/slurmd/sbatch/munged are missing"
    say "installed $(slurmctld -V)"
}

# pid from a pid file, only if that process is alive and is the named program (pid files can outlive a machine).
live_pid() {
    local file=$1 name=$2 pid
    [[ -s $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid && -r /proc/$pid/comm && $(cat "/proc/$pid/comm") == "$name" ]] || return 1
    echo "$pid"
}

node_name() { hostname -s; }

write_config() {
    local node hw mem gres_line=""
    node=$(node_name)
    hw=$(slurmd -C | head -1)  # NodeName=<host> CPUs=.. Boards=.. SocketsPerBoard=.. CoresPerSocket=.. ThreadsPerCore=.. RealMemory=..
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
    # Advertise at least $SLURM_LOCAL_MEM_MB so the slurm profile's per-rule requests (sized for real
    # clusters) fit; slurmd takes the configured values (config_overrides) and nothing enforces memory here.
    mem=$((mem * 9 / 10 > MEM_MB ? mem * 9 / 10 : MEM_MB))
    hw=$(sed "s/RealMemory=[0-9]*/RealMemory=$mem/" <<<"$hw")
    if ((GPUS > 0)); then
        gres_line=" Gres=gpu:$GPUS"
    fi
    if [[ -e $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; refusing to overwrite a real cluster's config"
    fi
    install -d "$CONF_DIR" "$RUN_DIR" "$STATE_DIR/ctld" "$STATE_DIR/slurmd" "$LOG_DIR"
    local new
    new=$(
        cat <<EOF
$MARKER: a single-node cluster for tests.
ClusterName=tunepipe-local
SlurmctldHost=$node(127.0.0.1)
$(scheduler_settings)
GresTypes=gpu
JobCompLoc=$LOG_DIR/jobcomp.log
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
${hw}${gres_line} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=local Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    )
    CONFIG_CHANGED=1
    if [[ -e $CONF ]] && [[ $(cat "$CONF") == "$new" ]]; then
        CONFIG_CHANGED=0
    fi
    printf '%s\n' "$new" >"$CONF"
    # Fake GPUs: gres.conf File= entries must be character devices; these are copies of /dev/null's numbers.
    {
        echo "$MARKER"
        for ((i = 0; i < GPUS; i++)); do
            [[ -c /dev/tunepipe-fake-gpu$i ]] || mknod "/dev/tunepipe-fake-gpu$i" c 1 3 \
                || die "cannot create fake GPU devices (mknod); set SLURM_LOCAL_GPUS=0 for a cluster without GPUs"
            echo "NodeName=$node Name=gpu File=/dev/tunepipe-fake-gpu$i"
        done
    } >"$GRES_CONF"
}

# Runs `command...` to start the daemon NAME unless PIDFILE names a live one, then waits up to 10 s for PIDFILE; LOGS
# says where to look when it does not start.  Usage: launch_daemon NAME PIDFILE LOGS command...
launch_daemon() {
    local name=$1 pidfile=$2 logs=$3
    shift 3
    if live_pid "$pidfile" "$name" >/dev/null; then
        return
    fi
    rm -f "$pidfile"
    "$@" 9>&- || die "$name failed to start (see $logs)"
    for _ in $(seq 100); do
        live_pid "$pidfile" "$name" >/dev/null && return
        sleep 0.1
    done
    die "$name did not start (see $logs)"
}

start_munge() {
    if live_pid "$MUNGE_PID" munged >/dev/null; then
        return
    fi
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    launch_daemon munged "$MUNGE_PID" /var/log/munge/munged.log runuser -u munge -- /usr/sbin/munged
}

start_daemon() {
    local name=$1 pidfile=$2
    shift 2
    launch_daemon "$name" "$pidfile" "$LOG_DIR/$name.log" "$name" "$@"
}

stop_daemon() {
    local name=$1 pidfile=$2 pid
    if pid=$(live_pid "$pidfile" "$name"); then
        kill "$pid"
        for _ in $(seq 100); do
            [[ -d /proc/$pid ]] || break
            sleep 0.1
        done
        [[ -d /proc/$pid ]] && kill -9 "$pid"
        say "stopped $name ($pid)"
    fi
    rm -f "$pidfile"
}

node_state() { sinfo -h -n "$(node_name)" -o %t 2>/dev/null | head -1; }

cmd_start() {
    need_root
    lock
    installed || cmd_install
    write_config
    if ((CONFIG_CHANGED)); then  # a changed config needs fresh daemons
        stop_daemon slurmd "$SLURMD_PID"
        stop_daemon slurmctld "$CTLD_PID"
    fi
    start_munge
    local fresh=1
    live_pid "$CTLD_PID" slurmctld >/dev/null && fresh=0
    start_daemon slurmctld "$CTLD_PID"
    start_daemon slurmd "$SLURMD_PID"
    if ((fresh)); then
        # slurmctld restores the jobs of its last run from StateSaveLocation: those of an earlier, ended session
        # (a test run cut short) would hold the node's CPUs for good. Nobody waits for them any more.
        local leftover
        leftover=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
        if [[ -n ${leftover// /} ]]; then
            say "cancelling jobs left from an earlier run of the cluster: $leftover"
            # shellcheck disable=SC2086
            scancel $leftover 2>/dev/null || true
        fi
    fi
    local state=""
    for _ in $(seq $((WAIT_SECONDS * 2))); do
        state=$(node_state)
        case $state in
        idle | mix | alloc | comp)
            say "node $(node_name) is $state ($(nproc) CPUs, $GPUS fake GPUs); try: srun hostname"
            return
            ;;
        drain* | down*) scontrol update NodeName="$(node_name)" State=RESUME 2>/dev/null || true ;;
        esac
        sleep 0.5
    done
    die "node $(node_name) is '${state:-unknown}' after ${WAIT_SECONDS}s (see $LOG_DIR/slurmctld.log and slurmd.log)"
}

cmd_stop() {
    need_root
    lock
    stop_daemon slurmd "$SLURMD_PID"
    stop_daemon slurmctld "$CTLD_PID"
    if two_nodes_running; then
        say "munged keeps running for the two-node cluster (stop it with: $0 stop --nodes 2)"
    else
        stop_daemon munged "$MUNGE_PID"
    fi
}

cmd_status() {
    local ok=0 name pidfile pid
    for entry in munged:$MUNGE_PID slurmctld:$CTLD_PID slurmd:$SLURMD_PID; do
        name=${entry%%:*}
        pidfile=${entry#*:}
        if pid=$(live_pid "$pidfile" "$name"); then
            echo "$name running (pid $pid)"
        else
            echo "$name not running"
            ok=1
        fi
    done
    if ((ok == 0)); then
        sinfo -N -o "%N %P %t %c %m %G"
        case $(node_state) in idle | mix | alloc | comp) ;; *) ok=1 ;; esac
    fi
    return $ok
}

# ------------------------------------------------------------------------------------------------ two nodes
two_ctld_pid() { echo "$TWO_RUN_DIR/slurmctld.pid"; }
two_slurmd_pid() { echo "$TWO_RUN_DIR/slurmd-$1.pid"; }
two_nodes_running() { live_pid "$(two_ctld_pid)" slurmctld >/dev/null; }
host_addr() {
    case $1 in
    "$CONTROLLER") echo "$SUBNET.10" ;;
    "${NODES[0]}") echo "$SUBNET.11" ;;
    "${NODES[1]}") echo "$SUBNET.12" ;;
    esac
}
two_sinfo() { SLURM_CONF=$TWO_CONF sinfo "$@" 2>/dev/null; }

# Run a command as host $1: in its network namespace, with its own hostname (a UTS namespace), and in a mount
# namespace that sees the filesystem as it is but for /etc/hosts and /etc/slurm (the two-node cluster's).
# Not `ip netns exec`: it mounts a fresh /sys, without the cgroup mounts that slurmd needs.
as_host() {
    local host=$1
    shift
    nsenter --net="/run/netns/$host" unshare --mount --uts -- \
        sh -c 'hostname "$0" && mount --bind "/etc/netns/$0/hosts" /etc/hosts && mount --bind "$1" /etc/slurm && shift && exec "$@"' \
        "$host" "$TWO_CONF_DIR" "$@"
}

check_namespaces() {
    local why
    command -v ip >/dev/null || die "the two-node cluster needs the ip command (apt-get install iproute2)"
    if ! why=$(unshare --net --uts -- true 2>&1); then
        die "this kernel or these permissions do not allow network and UTS namespaces (unshare --net --uts: ${why:-failed}); the two-node cluster needs root (CAP_SYS_ADMIN) and a kernel with network namespaces, veth and bridges"
    fi
}

network_up() {
    local host addr why
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        if ip -4 -o addr show | grep -qF " $SUBNET." || ip -4 route show | grep -qF "$SUBNET.0/"; then
            die "the subnet $SUBNET.0/24 is already in use on this machine; pick a free private one with SLURM_LOCAL_SUBNET (e.g. 10.227.26)"
        fi
        why=$(ip link add "$BRIDGE" type bridge 2>&1) \
            || die "cannot create the bridge $BRIDGE (ip link add type bridge: $why); the two-node cluster needs bridges and veth pairs (root, CAP_NET_ADMIN)"
        ip addr add "$SUBNET.1/24" dev "$BRIDGE"
        ip link set "$BRIDGE" up
    fi
    install -d /etc/netns
    for host in "$CONTROLLER" "${NODES[@]}"; do
        addr=$(host_addr "$host")
        if [[ ! -e /run/netns/$host ]]; then
            why=$(ip netns add "$host" 2>&1) || die "cannot create the network namespace $host (ip netns add: $why)"
        fi
        if ! ip -n "$host" link show eth0 >/dev/null 2>&1; then
            why=$(ip link add "v-$host" type veth peer name eth0 netns "$host" 2>&1) \
                || die "cannot create a veth pair for $host (ip link add type veth: $why)"
            ip link set "v-$host" master "$BRIDGE" up
            ip -n "$host" addr add "$addr/24" dev eth0
            ip -n "$host" link set eth0 up
        fi
        ip -n "$host" link set lo up
        install -d "/etc/netns/$host" # as_host mounts it over /etc/hosts, as `ip netns exec` would
        {
            echo "127.0.0.1 localhost"
            echo "$SUBNET.1 $(node_name)"
            for other in "$CONTROLLER" "${NODES[@]}"; do echo "$(host_addr "$other") $other"; done
        } >"/etc/netns/$host/hosts"
    done
}

# Every process still running as one of the hosts (job steps, slurmstepd): TERM, then KILL.
end_host_processes() {
    local host=$1 pids
    [[ -e /run/netns/$host ]] || return 0
    for signal in TERM KILL; do
        pids=$(ip netns pids "$host" 2>/dev/null | tr '\n' ' ')
        [[ -n ${pids// /} ]] || return 0
        # shellcheck disable=SC2086
        kill -s "$signal" $pids 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -z $(ip netns pids "$host" 2>/dev/null) ]] && return 0
            sleep 0.1
        done
    done
}

network_down() {
    local host
    for host in "$CONTROLLER" "${NODES[@]}"; do
        end_host_processes "$host"
        ip link del "v-$host" 2>/dev/null || true
        ip netns del "$host" 2>/dev/null || true
        rm -rf "/etc/netns/$host"
    done
    rmdir /etc/netns 2>/dev/null || true # only when nothing else uses it
    ip link del "$BRIDGE" 2>/dev/null || true
    for _ in $(seq 50); do # interfaces go away asynchronously
        ip -o link show | grep -qE ": (v-($CONTROLLER|${NODES[0]}|${NODES[1]})|$BRIDGE)[@:]" || return 0
        sleep 0.1
    done
    say "warning: interfaces of the two-node cluster are still listed: $(ip -o link show | grep -oE "(v-tp[a-z0-9]+|$BRIDGE)" | tr '\n' ' ')"
}

write_two_node_config() {
    local hw mem cpus
    hw=$(slurmd -C | head -1)
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
    mem=$((mem * 9 / 10 > MEM_MB ? mem * 9 / 10 : MEM_MB)) # as for the single node: the profile's requests must fit
    # Each node advertises twice this machine's CPUs: two jobs that each ask for all of them run side by side
    # (the tests run two trainings at once). Nothing binds tasks to CPUs here (task/none), so a job's processes
    # see the machine's CPUs either way.
    cpus=$((2 * $(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")))
    hw="CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem"
    if [[ -e $TWO_CONF ]] && ! grep -qF "$MARKER" "$TWO_CONF"; then
        die "$TWO_CONF exists and was not written by this script; refusing to overwrite it"
    fi
    install -d "$CONF_DIR" "$TWO_CONF_DIR" "$TWO_RUN_DIR" "$TWO_STATE_DIR/ctld" "$TWO_LOG_DIR" "${NODES[@]/#/$TWO_STATE_DIR/slurmd-}"
    cat >"$TWO_CONF" <<EOF
$MARKER: a two-node cluster for tests (scripts/slurm-local.sh start --nodes 2).
# Each host is a network + UTS namespace of this machine on the bridge $BRIDGE ($SUBNET.0/24); the rest as for one node.
ClusterName=tunepipe-two-nodes
SlurmctldHost=$CONTROLLER($(host_addr "$CONTROLLER"))
$(scheduler_settings)
JobCompLoc=$TWO_LOG_DIR/jobcomp.log
StateSaveLocation=$TWO_STATE_DIR/ctld
SlurmdSpoolDir=$TWO_STATE_DIR/slurmd-%n
SlurmctldPidFile=$(two_ctld_pid)
SlurmdPidFile=$TWO_RUN_DIR/slurmd-%n.pid
SlurmctldLogFile=$TWO_LOG_DIR/slurmctld.log
SlurmdLogFile=$TWO_LOG_DIR/slurmd-%n.log
NodeName=${NODES[0]} NodeAddr=$(host_addr "${NODES[0]}") $hw State=UNKNOWN
NodeName=${NODES[1]} NodeAddr=$(host_addr "${NODES[1]}") $hw State=UNKNOWN
PartitionName=two-nodes Nodes=${NODES[0]},${NODES[1]} Default=YES MaxTime=INFINITE State=UP
EOF
}

start_as_host() {
    local host=$1 name=$2 pidfile=$3
    launch_daemon "$name" "$pidfile" "$TWO_LOG_DIR/ for $host" as_host "$host" "$name" -f "$TWO_CONF"
}

cmd_start_two() {
    need_root
    lock
    check_namespaces
    installed || cmd_install
    local fresh=1 host
    two_nodes_running && fresh=0
    if ((fresh)); then
        write_two_node_config
    fi
    network_up
    start_munge
    start_as_host "$CONTROLLER" slurmctld "$(two_ctld_pid)"
    for host in "${NODES[@]}"; do
        start_as_host "$host" slurmd "$(two_slurmd_pid "$host")"
    done
    if ((fresh)); then # jobs of an earlier session that ended without `stop` (see cmd_start)
        local leftover
        leftover=$(SLURM_CONF=$TWO_CONF squeue -h -o %i 2>/dev/null | tr '\n' ' ')
        if [[ -n ${leftover// /} ]]; then
            say "cancelling jobs left from an earlier run of the cluster: $leftover"
            # shellcheck disable=SC2086
            SLURM_CONF=$TWO_CONF scancel $leftover 2>/dev/null || true
        fi
    fi
    local states=""
    for _ in $(seq $((WAIT_SECONDS * 2))); do
        states=$(two_sinfo -h -N -o "%N=%t" | sort | tr '\n' ' ')
        if [[ $(grep -oE "=(idle|mix|alloc|comp)" <<<"$states" | wc -l) == "${#NODES[@]}" ]]; then
            say "nodes ${NODES[*]} are up (${states% }); use them with: export SLURM_CONF=$TWO_CONF"
            return
        fi
        for host in "${NODES[@]}"; do
            if grep -qE "$host=(drain|down)" <<<"$states"; then
                SLURM_CONF=$TWO_CONF scontrol update NodeName="$host" State=RESUME 2>/dev/null || true
            fi
        done
        sleep 0.5
    done
    die "the two nodes are '${states:-unknown}' after ${WAIT_SECONDS}s (see $TWO_LOG_DIR/)"
}

cmd_stop_two() {
    need_root
    lock
    local host
    for host in "${NODES[@]}"; do
        stop_daemon slurmd "$(two_slurmd_pid "$host")"
    done
    stop_daemon slurmctld "$(two_ctld_pid)"
    network_down
    rm -rf "$TWO_STATE_DIR" "$TWO_RUN_DIR" # no job of this session comes back in the next one
    if live_pid "$CTLD_PID" slurmctld >/dev/null; then
        say "munged keeps running for the single-node cluster"
    else
        stop_daemon munged "$MUNGE_PID"
    fi
}

cmd_status_two() {
    local ok=0 pid name pidfile host
    for entry in "munged:$MUNGE_PID:" "slurmctld:$(two_ctld_pid):$CONTROLLER" \
        "slurmd:$(two_slurmd_pid "${NODES[0]}"):${NODES[0]}" "slurmd:$(two_slurmd_pid "${NODES[1]}"):${NODES[1]}"; do
        IFS=: read -r name pidfile host <<<"$entry"
        if pid=$(live_pid "$pidfile" "$name"); then
            echo "$name${host:+ on $host} running (pid $pid)"
        else
            echo "$name${host:+ on $host} not running"
            ok=1
        fi
    done
    if ((ok == 0)); then
        two_sinfo -N -o "%N %P %t %c %m"
        [[ $(two_sinfo -h -N -o %t | grep -cE "^(idle|mix|alloc|comp)$") == "${#NODES[@]}" ]] || ok=1
    fi
    return $ok
}

usage() {
    echo "usage: $0 install|start|stop|status [--nodes 1|2]" >&2
    exit 2
}

nodes=1
case ${2:-} in
"") ;;
--nodes) nodes=${3:-} ;;
--nodes=*) nodes=${2#--nodes=} ;;
*) usage ;;
esac

case ${1:-}:$nodes in
install:1 | install:2) cmd_install ;;
start:1) cmd_start ;;
stop:1) cmd_stop ;;
status:1) cmd_status ;;
start:2) cmd_start_two ;;
stop:2) cmd_stop_two ;;
status:2) cmd_status_two ;;
*) usage ;;
esac
