#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the SLURM tests and for trying the slurm profile.
#
#   scripts/slurm-local.sh install   # Debian's slurmctld, slurmd, slurm-client and munge (as root)
#   scripts/slurm-local.sh start     # install if needed, write the config, start the daemons, wait for the node
#   scripts/slurm-local.sh status    # daemons and node state; exit 0 when the node takes jobs
#   scripts/slurm-local.sh stop      # stop the daemons (munged, slurmctld, slurmd)
#
# Every subcommand is safe to run twice. The node is this machine as `slurmd -C` describes it, with
# $SLURM_LOCAL_GPUS (default 2) fake GPUs: character devices, so jobs can request `--gpus` and get
# CUDA_VISIBLE_DEVICES, while CUDA itself sees no GPU. No accounting database: `sacct` does not work,
# so the profile polls with squeue (MinJobAge keeps finished jobs visible to it for 5 minutes).
# Debian 12 packages (SLURM 22.05); needs root and apt; no init system needed (daemons are started by hand).
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

say() { echo "slurm-local: $*" >&2; }
die() { say "error: $*"; exit 1; }
need_root() { [[ $(id -u) == 0 ]] || die "must run as root (it installs packages and starts system daemons)"; }

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
SlurmUser=root
AuthType=auth/munge
# No cgroups in containers: track processes by parent pid, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
GresTypes=gpu
ReturnToService=2
SlurmdParameters=config_overrides
# Finished jobs stay visible to squeue for 5 minutes: the profile polls with squeue (no sacct without slurmdbd).
MinJobAge=300
KillWait=10
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
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

start_munge() {
    if live_pid "$MUNGE_PID" munged >/dev/null; then
        return
    fi
    rm -f "$MUNGE_PID" /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do
        live_pid "$MUNGE_PID" munged >/dev/null && return
        sleep 0.1
    done
    die "munged did not start (see /var/log/munge/munged.log)"
}

start_daemon() {
    local name=$1 pidfile=$2
    shift 2
    if live_pid "$pidfile" "$name" >/dev/null; then
        return
    fi
    rm -f "$pidfile"
    "$name" "$@" || die "$name failed to start (see $LOG_DIR/$name.log)"
    for _ in $(seq 100); do
        live_pid "$pidfile" "$name" >/dev/null && return
        sleep 0.1
    done
    die "$name did not start (see $LOG_DIR/$name.log)"
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
    stop_daemon slurmd "$SLURMD_PID"
    stop_daemon slurmctld "$CTLD_PID"
    stop_daemon munged "$MUNGE_PID"
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

case ${1:-} in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*)
    echo "usage: $0 install|start|stop|status" >&2
    exit 2
    ;;
esac
