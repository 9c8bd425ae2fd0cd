#!/usr/bin/env bash
# dev-cluster.sh — install and run REAL ClickHouse servers for chmigrate's
# tests and quick start (Debian's clickhouse-server 18.16 + ZooKeeper 3.8).
#
# Everything runs as plain background processes on loopback addresses, with
# configs, data, logs and pid files under one state dir:
#   ${CHMIGRATE_DEV_DIR:-/tmp/chmigrate-dev}
#
#   single node : 127.0.0.1   HTTP 8123, HTTPS 8443, TCP 9000, interserver 9009
#                 HTTPS uses a throw-away CA made by this script (once per state
#                 dir): <state dir>/tls/ca.pem signs a server cert for
#                 IP:127.0.0.1 and DNS:localhost (see `tls-ca-path`).
#   cluster     : 127.0.0.11 .. 127.0.0.14 (node1..node4), cluster `chm_cluster`
#                 = 2 shards x 2 replicas (node1+node2 = shard 1, node3+node4 =
#                 shard 2). HTTP 8123 and interserver 9009 on each address;
#                 native TCP 9001..9004 (node N -> 9000+N), see below.
#   ZooKeeper   : 127.0.0.1:12181 (non-default port, no admin server)
#
# Why the cluster's native TCP ports differ (9001..9004, not 9000): on 18.16 a
# server decides whether a distributed-DDL entry is addressed to it by checking
# "host is an address of a local network interface AND port == my tcp_port".
# All four nodes share one network stack, so the port is the only thing that
# can tell them apart. For the same reason the script adds 127.0.0.11-14/32 to
# `lo` (needs root / CAP_NET_ADMIN): an address not configured on an interface
# never counts as local, and ON CLUSTER queries would then hang until timeout.
#
# Usage: scripts/dev-cluster.sh <command>
#   install        install packages if missing (apt; quick when present)
#   start-single   start the single node (HTTP + HTTPS) and wait for SELECT 1
#   tls-ca-path    print the path of the dev CA cert (made if missing) that
#                  signed the single node's HTTPS cert
#   start-cluster  start ZooKeeper + 4 nodes, wait for them and for ON CLUSTER DDL
#   stop           stop everything (single, cluster nodes, ZooKeeper)
#   stop-node N    graceful stop of cluster node N (1..4), waits for exit
#   start-node N   (re)start cluster node N and wait until it answers
#   kill-node N    SIGKILL cluster node N
#   kill-single    SIGKILL the single node (start-single brings it back)
#   pause-node N   SIGSTOP cluster node N
#   resume-node N  SIGCONT cluster node N
#   stop-zk        stop ZooKeeper
#   start-zk       start ZooKeeper and wait until it answers
#   status         show which processes are up
#   wipe           stop everything and delete the state dir (fresh start)
#
# Environment knobs (all optional):
#   CHMIGRATE_DEV_DIR            state dir (default /tmp/chmigrate-dev)
#   CHMIGRATE_DEV_ZK_PORT        ZooKeeper client port (default 12181)
#   CHMIGRATE_DEV_START_TIMEOUT  seconds to wait for a process to answer (60)
#   CHMIGRATE_DEV_DDL_TIMEOUT    seconds to wait for ON CLUSTER DDL to work (120)
#   CHMIGRATE_DEV_LOG_LEVEL      ClickHouse log level (default information)
set -euo pipefail

STATE_DIR="${CHMIGRATE_DEV_DIR:-/tmp/chmigrate-dev}"
# Server configs need absolute paths.
[[ $STATE_DIR == /* ]] || STATE_DIR="$PWD/$STATE_DIR"
readonly STATE_DIR="${STATE_DIR%/}"
readonly ZK_ADDR="127.0.0.1"
readonly ZK_PORT="${CHMIGRATE_DEV_ZK_PORT:-12181}"
readonly HTTP_PORT=8123
readonly HTTPS_PORT=8443
readonly TLS_DIR="$STATE_DIR/tls"
readonly TLS_CA="$TLS_DIR/ca.pem"
readonly TLS_CERT="$TLS_DIR/server.pem"
readonly TLS_KEY="$TLS_DIR/server-key.pem"
readonly TLS_DAYS=3650
readonly SINGLE_ADDR="127.0.0.1"
readonly SINGLE_TCP_PORT=9000
readonly INTERSERVER_PORT=9009
readonly CLUSTER_NAME="chm_cluster"
readonly DDL_QUEUE_PATH="/clickhouse/task_queue/ddl"
readonly SECRET_USER="chm_secret"
readonly SECRET_PASSWORD="s3cret-pw"
readonly START_TIMEOUT="${CHMIGRATE_DEV_START_TIMEOUT:-60}"
readonly DDL_TIMEOUT="${CHMIGRATE_DEV_DDL_TIMEOUT:-120}"
readonly STOP_TIMEOUT=60
readonly LOG_LEVEL="${CHMIGRATE_DEV_LOG_LEVEL:-information}"
readonly CH_BIN="/usr/sbin/clickhouse-server"
readonly ZK_JAR="/usr/share/java/zookeeper.jar"
readonly NODES=(1 2 3 4)

log() { printf '[dev-cluster] %s\n' "$*" >&2; }
die() { printf '[dev-cluster] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- topology --

node_addr() { printf '127.0.0.%d' "$((10 + $1))"; }
node_tcp_port() { printf '%d' "$((9000 + $1))"; }
node_shard() { printf '%d' "$(((($1 - 1) / 2) + 1))"; }

check_node_arg() {
    [[ "${1:-}" =~ ^[1-4]$ ]] || die "node number must be 1..4, got '${1:-}'"
}

# ------------------------------------------------------------------ install --

pkg_installed() {
    local status
    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
    [[ $status == "install ok installed" ]]
}

cmd_install() {
    local wanted=(clickhouse-server clickhouse-client zookeeper curl iproute2 openssl)
    local missing=() p
    for p in "${wanted[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "packages already installed"
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die "installing ${missing[*]} needs root"
    log "installing: ${missing[*]}"

    # Keep the packages' own services from starting (they would grab
    # 127.0.0.1:8123/9000 and :2181). Only add a policy-rc.d if none exists.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        made_policy=1
    fi
    local rc=0
    {
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq &&
            apt-get install -y -qq --no-install-recommends \
                -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
                "${missing[@]}"
    } || rc=$?
    if [[ $made_policy -eq 1 ]]; then rm -f "$policy"; fi
    [[ $rc -eq 0 ]] || die "apt-get failed (exit $rc)"

    # If the package's init script started the system server anyway, stop it.
    local sys_pidfile=/var/run/clickhouse-server.pid
    if [[ -s $sys_pidfile ]] && kill -0 "$(cat "$sys_pidfile")" 2>/dev/null; then
        log "stopping the package's own clickhouse-server service"
        /etc/init.d/clickhouse-server stop || true
    fi
    log "install done"
}

require_installed() {
    [[ -x $CH_BIN ]] || die "clickhouse-server missing: run '$0 install' first"
    command -v curl >/dev/null || die "curl missing: run '$0 install' first"
}

require_openssl() {
    command -v openssl >/dev/null || die "openssl missing: run '$0 install' first"
}

require_zk_installed() {
    [[ -r $ZK_JAR ]] || die "ZooKeeper missing: run '$0 install' first"
    command -v java >/dev/null || die "java missing: run '$0 install' first"
}

# ------------------------------------------------------------- processes --

# pid_of NAME: print the pid of a live process we started, else fail.
pid_of() {
    local pidfile="$STATE_DIR/$1/pid" pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    # Guard against pid reuse: the command line must mention our state dir.
    local cmdline
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$STATE_DIR/$1/"* ]] || return 1
    # A zombie is as good as dead.
    [[ $(proc_state "$pid") != Z ]] || return 1
    printf '%s' "$pid"
}

proc_state() {
    # Third field of /proc/PID/stat; the command name (field 2) may contain
    # spaces, so cut after the closing parenthesis.
    local stat
    stat=$(<"/proc/$1/stat") || return 1
    stat=${stat##*) }
    printf '%s' "${stat%% *}"
}

is_running() { pid_of "$1" >/dev/null; }

# launch NAME CMD...: start CMD detached (own session), record its pid.
launch() {
    local name=$1
    shift
    local dir="$STATE_DIR/$name"
    rm -f "$dir/pid"
    # The inner shell writes its own pid, then execs the server, so the pid
    # file holds the server's pid whatever setsid decides about forking.
    # The server runs from / rather than from the caller's folder: a
    # checkout deleted while the server runs must not take the server's
    # working directory with it (18.16 then fails queries with "cannot get
    # current directory").
    # shellcheck disable=SC2016 # expanded by the inner shell
    (cd / && setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' launch "$dir/pid" "$@") \
        </dev/null >>"$dir/stdout.log" 2>&1 &
    local deadline=$((SECONDS + 5))
    until [[ -s $dir/pid ]]; do
        ((SECONDS < deadline)) || die "$name: launcher did not write $dir/pid"
        sleep 0.05
    done
}

# stop_proc NAME: SIGTERM and wait for exit (SIGKILL after STOP_TIMEOUT).
stop_proc() {
    local name=$1 pid
    if ! pid=$(pid_of "$name"); then
        rm -f "$STATE_DIR/$name/pid"
        return 0
    fi
    kill -CONT "$pid" 2>/dev/null || true # a paused process ignores SIGTERM
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while pid_of "$name" >/dev/null; do
        if ((SECONDS >= deadline)); then
            log "$name (pid $pid) still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.1
    done
    rm -f "$STATE_DIR/$name/pid"
    log "$name stopped"
}

signal_proc() {
    local name=$1 sig=$2 pid
    pid=$(pid_of "$name") || die "$name is not running"
    kill "-$sig" "$pid"
    log "sent SIG$sig to $name (pid $pid)"
}

# --------------------------------------------------------------- ZooKeeper --

zk_ok() {
    # Four-letter word "srvr" over bash's /dev/tcp. Only a server that really
    # serves requests prints "Mode: standalone" ("ruok" says imok too early,
    # and an 18.16 server that meets a not-yet-serving ZooKeeper at startup
    # can segfault in its DDL worker).
    local reply=""
    # shellcheck disable=SC2016 # expanded by the inner shell
    reply=$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf srvr >&3
        cat <&3' zk "$ZK_ADDR" "$ZK_PORT" 2>/dev/null) || return 1
    [[ $reply == *"Mode: standalone"* ]]
}

write_zk_config() {
    local dir="$STATE_DIR/zk"
    mkdir -p "$dir/data"
    cat >"$dir/zoo.cfg" <<EOF
# generated by scripts/dev-cluster.sh
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$ZK_PORT
clientPortAddress=$ZK_ADDR
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
EOF
    cat >"$dir/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] - %m%n
EOF
}

cmd_start_zk() {
    require_zk_installed
    if is_running zk && zk_ok; then
        log "zookeeper already running on $ZK_ADDR:$ZK_PORT"
        return 0
    fi
    if ! is_running zk; then
        write_zk_config
        local dir="$STATE_DIR/zk" cp="$ZK_JAR" jar
        # Optional log4j binding so the server log is not silently dropped.
        for jar in /usr/share/java/slf4j-log4j12.jar /usr/share/java/log4j-1.2.jar; do
            if [[ -r $jar ]]; then cp="$cp:$jar"; fi
        done
        log "starting zookeeper on $ZK_ADDR:$ZK_PORT"
        launch zk java -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
            -Dzookeeper.jmx.log4j.disable=true \
            "-Dlog4j.configuration=file:$dir/log4j.properties" \
            -cp "$cp" org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zoo.cfg"
    fi
    local deadline=$((SECONDS + START_TIMEOUT))
    until zk_ok; do
        is_running zk || die "zookeeper exited; see $STATE_DIR/zk/stdout.log"
        ((SECONDS < deadline)) || die "zookeeper did not answer within ${START_TIMEOUT}s"
        sleep 0.2
    done
    log "zookeeper up on $ZK_ADDR:$ZK_PORT"
}

cmd_stop_zk() { stop_proc zk; }

# -------------------------------------------------------------- ClickHouse --

# ch_query ADDR SQL [URL_PARAMS]: POST SQL over HTTP as `default`, print the
# body; fails on a non-200 answer. CH_QUERY_MAX_TIME caps the wait (seconds).
ch_query() {
    local addr=$1 sql=$2 params=${3:-}
    curl -sS --fail-with-body --max-time "${CH_QUERY_MAX_TIME:-5}" \
        --data-binary "$sql" "http://$addr:$HTTP_PORT/?$params"
}

http_ok() { [[ $(CH_QUERY_MAX_TIME=2 ch_query "$1" 'SELECT 1' 2>/dev/null) == 1 ]]; }

# write_users_xml DIR: users `default` (no password) and `chm_secret`.
write_users_xml() {
    local dir=$1 secret_sha
    secret_sha=$(printf '%s' "$SECRET_PASSWORD" | sha256sum | cut -d' ' -f1)
    cat >"$dir/users.xml" <<EOF
<?xml version="1.0"?>
<!-- generated by scripts/dev-cluster.sh -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
            <max_memory_usage_for_all_queries>4000000000</max_memory_usage_for_all_queries>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>in_order</load_balancing>
            <background_pool_size>4</background_pool_size>
            <background_schedule_pool_size>8</background_schedule_pool_size>
            <!-- As current ClickHouse does by default (18.16 does not):
                 system.query_log, which chmigrate profile reads. -->
            <log_queries>1</log_queries>
        </default>
        <readonly>
            <readonly>1</readonly>
        </readonly>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>::/0</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
        <$SECRET_USER>
            <!-- sha256 of the password "$SECRET_PASSWORD" -->
            <password_sha256_hex>$secret_sha</password_sha256_hex>
            <networks><ip>::/0</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </$SECRET_USER>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

# write_config_xml DIR ADDR TCP_PORT EXTRA_XML
write_config_xml() {
    local dir=$1 addr=$2 tcp_port=$3 extra=$4
    cat >"$dir/config.xml" <<EOF
<?xml version="1.0"?>
<!-- generated by scripts/dev-cluster.sh -->
<yandex>
    <logger>
        <level>$LOG_LEVEL</level>
        <log>$dir/log/clickhouse-server.log</log>
        <errorlog>$dir/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <listen_host>$addr</listen_host>
    <http_port>$HTTP_PORT</http_port>
    <tcp_port>$tcp_port</tcp_port>
    <interserver_http_host>$addr</interserver_http_host>
    <interserver_http_port>$INTERSERVER_PORT</interserver_http_port>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <!-- small caches: the dev machine is shared with cargo builds -->
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$dir/data/</path>
    <tmp_path>$dir/data/tmp/</tmp_path>
    <user_files_path>$dir/data/user_files/</user_files_path>
    <format_schema_path>$dir/data/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
    <max_table_size_to_drop>0</max_table_size_to_drop>
    <max_partition_size_to_drop>0</max_partition_size_to_drop>
    <query_log>
        <database>system</database>
        <table>query_log</table>
        <partition_by>toYYYYMM(event_date)</partition_by>
        <flush_interval_milliseconds>3000</flush_interval_milliseconds>
    </query_log>
$extra
</yandex>
EOF
}

cluster_xml() {
    local n=$1
    cat <<EOF
    <remote_servers>
        <$CLUSTER_NAME>
            <shard>
                <internal_replication>true</internal_replication>
                <replica><host>$(node_addr 1)</host><port>$(node_tcp_port 1)</port></replica>
                <replica><host>$(node_addr 2)</host><port>$(node_tcp_port 2)</port></replica>
            </shard>
            <shard>
                <internal_replication>true</internal_replication>
                <replica><host>$(node_addr 3)</host><port>$(node_tcp_port 3)</port></replica>
                <replica><host>$(node_addr 4)</host><port>$(node_tcp_port 4)</port></replica>
            </shard>
        </$CLUSTER_NAME>
    </remote_servers>
    <macros>
        <cluster>$CLUSTER_NAME</cluster>
        <shard>$(node_shard "$n")</shard>
        <replica>node$n</replica>
    </macros>
    <zookeeper>
        <node><host>$ZK_ADDR</host><port>$ZK_PORT</port></node>
        <session_timeout_ms>10000</session_timeout_ms>
    </zookeeper>
    <distributed_ddl>
        <path>$DDL_QUEUE_PATH</path>
    </distributed_ddl>
EOF
}

# start_ch NAME ADDR TCP_PORT EXTRA_XML: start (if not running), no waiting.
start_ch() {
    local name=$1 addr=$2 tcp_port=$3 extra=$4
    local dir="$STATE_DIR/$name"
    if is_running "$name"; then
        return 0
    fi
    mkdir -p "$dir/data" "$dir/log"
    write_users_xml "$dir"
    write_config_xml "$dir" "$addr" "$tcp_port" "$extra"
    log "starting $name on $addr (http $HTTP_PORT, tcp $tcp_port, interserver $INTERSERVER_PORT)"
    launch "$name" "$CH_BIN" "--config-file=$dir/config.xml"
}

# wait_ch NAME ADDR: wait until SELECT 1 answers over HTTP.
wait_ch() {
    local name=$1 addr=$2
    local deadline=$((SECONDS + START_TIMEOUT))
    until http_ok "$addr"; do
        if ! is_running "$name"; then
            tail -n 20 "$STATE_DIR/$name/log/clickhouse-server.err.log" >&2 2>/dev/null || true
            die "$name exited during startup; see $STATE_DIR/$name/log/"
        fi
        local pid
        pid=$(pid_of "$name") || continue
        if [[ $(proc_state "$pid") == T ]]; then
            die "$name is paused (SIGSTOP); resume it first"
        fi
        ((SECONDS < deadline)) || die "$name did not answer on http://$addr:$HTTP_PORT within ${START_TIMEOUT}s"
        sleep 0.2
    done
}

# --------------------------------------------------------------------- TLS --

tls_ready() { [[ -s $TLS_CA && -s $TLS_CERT && -s $TLS_KEY ]]; }

# ensure_tls: make the dev CA and the single node's server cert, once per
# state dir (kept until `wipe`). Built in a temp dir and renamed into place,
# so an interrupted run never leaves half a set behind.
ensure_tls() {
    tls_ready && return 0
    require_openssl
    mkdir -p "$STATE_DIR"
    local tmp
    tmp=$(mktemp -d "$STATE_DIR/tls.tmp.XXXXXX")
    if ! (
        set -e
        cd "$tmp"
        umask 077
        openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$TLS_DAYS" \
            -keyout ca-key.pem -out ca.pem -subj "/CN=chmigrate dev CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req -new -newkey rsa:2048 -nodes -sha256 \
            -keyout server-key.pem -out server.csr -subj "/CN=127.0.0.1"
        printf '%s\n' \
            'basicConstraints=critical,CA:FALSE' \
            'keyUsage=critical,digitalSignature,keyEncipherment' \
            'extendedKeyUsage=serverAuth' \
            'subjectAltName=IP:127.0.0.1,DNS:localhost' \
            'subjectKeyIdentifier=hash' \
            'authorityKeyIdentifier=keyid' >server.ext
        openssl x509 -req -sha256 -days "$TLS_DAYS" -in server.csr \
            -CA ca.pem -CAkey ca-key.pem -set_serial "0x$(openssl rand -hex 16)" \
            -extfile server.ext -out server.pem
        openssl verify -CAfile ca.pem server.pem
        chmod 0644 ca.pem server.pem
        rm -f server.csr server.ext
    ) >"$tmp/openssl.log" 2>&1; then
        cat "$tmp/openssl.log" >&2
        rm -rf "$tmp"
        die "could not generate the dev TLS certificates"
    fi
    rm -f "$tmp/openssl.log"
    chmod 0755 "$tmp"
    # A concurrent run may have won the race: keep its files.
    if ! mv -T "$tmp" "$TLS_DIR" 2>/dev/null; then
        rm -rf "$tmp"
        tls_ready || die "$TLS_DIR exists but is incomplete; remove it and retry"
        return 0
    fi
    log "made dev CA $TLS_CA and a server cert for IP:127.0.0.1, DNS:localhost"
}

# The single node's HTTPS config. 18.16 needs no dhParamsFile;
# verificationMode none = clients need no certificate of their own.
single_tls_xml() {
    cat <<EOF
    <https_port>$HTTPS_PORT</https_port>
    <openSSL>
        <server>
            <certificateFile>$TLS_CERT</certificateFile>
            <privateKeyFile>$TLS_KEY</privateKeyFile>
            <verificationMode>none</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
EOF
}

https_ok() {
    [[ $(curl -sS --max-time 2 --cacert "$TLS_CA" \
        "https://$SINGLE_ADDR:$HTTPS_PORT/?query=SELECT%201" 2>/dev/null) == 1 ]]
}

cmd_tls_ca_path() {
    ensure_tls
    printf '%s\n' "$TLS_CA"
}

# ---------------------------------------------------------------- commands --

cmd_start_single() {
    require_installed
    ensure_tls
    # A node started by an older version of this script has no HTTPS port:
    # restart it once so that the new config takes effect.
    if is_running single && ! grep -q '<https_port>' "$STATE_DIR/single/config.xml" 2>/dev/null; then
        log "single node runs without HTTPS (older config); restarting it"
        stop_proc single
    fi
    start_ch single "$SINGLE_ADDR" "$SINGLE_TCP_PORT" "$(single_tls_xml)"
    wait_ch single "$SINGLE_ADDR"
    local deadline=$((SECONDS + START_TIMEOUT))
    until https_ok; do
        is_running single || die "single exited; see $STATE_DIR/single/log/"
        ((SECONDS < deadline)) ||
            die "single did not answer on https://$SINGLE_ADDR:$HTTPS_PORT within ${START_TIMEOUT}s; see $STATE_DIR/single/log/"
        sleep 0.2
    done
    log "single node up"
    echo "single: http://$SINGLE_ADDR:$HTTP_PORT (tcp $SINGLE_ADDR:$SINGLE_TCP_PORT; users: default without password, $SECRET_USER)"
    echo "single https: https://$SINGLE_ADDR:$HTTPS_PORT (cert for IP:127.0.0.1 and DNS:localhost)"
    echo "tls ca: $TLS_CA"
}

ensure_loopback_addrs() {
    local n addr have
    # Read the list once (grep -q on a live pipe + pipefail = SIGPIPE flakes).
    have=$(ip -4 -o addr show dev lo)
    for n in "${NODES[@]}"; do
        addr=$(node_addr "$n")
        if [[ $have != *" $addr/"* ]]; then
            ip addr add "$addr/32" dev lo ||
                die "cannot add $addr to lo (needs root); distributed DDL cannot work without it"
        fi
    done
}

start_node_nowait() {
    local n=$1
    start_ch "node$n" "$(node_addr "$n")" "$(node_tcp_port "$n")" "$(cluster_xml "$n")"
}

# ddl_probe: one ON CLUSTER round trip; fails if any host did not answer OK.
ddl_probe() {
    local out
    out=$(CH_QUERY_MAX_TIME=40 ch_query "$(node_addr 1)" \
        "CREATE DATABASE IF NOT EXISTS chm_probe ON CLUSTER $CLUSTER_NAME" \
        "distributed_ddl_task_timeout=30" 2>&1) || {
        log "ddl probe (create) not ready yet: ${out:0:300}"
        return 1
    }
    out=$(CH_QUERY_MAX_TIME=40 ch_query "$(node_addr 1)" \
        "DROP DATABASE IF EXISTS chm_probe ON CLUSTER $CLUSTER_NAME" \
        "distributed_ddl_task_timeout=30" 2>&1) || {
        log "ddl probe (drop) not ready yet: ${out:0:300}"
        return 1
    }
}

cmd_start_cluster() {
    require_installed
    require_zk_installed
    local started=$SECONDS n
    ensure_loopback_addrs
    cmd_start_zk
    for n in "${NODES[@]}"; do start_node_nowait "$n"; done
    for n in "${NODES[@]}"; do wait_ch "node$n" "$(node_addr "$n")"; done
    log "all 4 nodes answer; checking distributed DDL"
    local deadline=$((SECONDS + DDL_TIMEOUT))
    until ddl_probe; do
        for n in "${NODES[@]}"; do
            is_running "node$n" || die "node$n exited; see $STATE_DIR/node$n/log/"
        done
        ((SECONDS < deadline)) || die "ON CLUSTER DDL did not work within ${DDL_TIMEOUT}s; see $STATE_DIR/node*/log/"
        sleep 1
    done
    log "cluster ready in $((SECONDS - started))s"
    local urls=()
    for n in "${NODES[@]}"; do urls+=("http://$(node_addr "$n"):$HTTP_PORT"); done
    echo "cluster: ${urls[*]} (cluster $CLUSTER_NAME; zookeeper $ZK_ADDR:$ZK_PORT)"
}

cmd_start_node() {
    check_node_arg "${1:-}"
    require_installed
    ensure_loopback_addrs
    if ! zk_ok; then
        log "warning: ZooKeeper is down; an 18.16 node that has Replicated tables exits at startup without it"
    fi
    start_node_nowait "$1"
    wait_ch "node$1" "$(node_addr "$1")"
    echo "node$1: http://$(node_addr "$1"):$HTTP_PORT"
}

# kill_proc NAME: SIGKILL (a crash: no shutdown, nothing flushed) and wait
# until the process is gone.
kill_proc() {
    local name=$1 pid
    if ! pid=$(pid_of "$name"); then
        log "$name is not running"
        return 0
    fi
    kill -KILL "$pid"
    local deadline=$((SECONDS + 10))
    while pid_of "$name" >/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
    log "killed $name (pid $pid)"
}

cmd_wipe() {
    cmd_stop
    [[ -n $STATE_DIR && $STATE_DIR != / ]] || die "refusing to wipe '$STATE_DIR'"
    rm -rf "$STATE_DIR"
    log "removed $STATE_DIR"
}

cmd_stop() {
    local n
    stop_proc single
    for n in "${NODES[@]}"; do stop_proc "node$n"; done
    stop_proc zk
}

status_line() {
    local name=$1 what=$2 pid state
    if pid=$(pid_of "$name"); then
        state=$(proc_state "$pid")
        if [[ $state == T ]]; then
            printf '%-7s paused   pid %-7s %s\n' "$name" "$pid" "$what"
        else
            printf '%-7s up       pid %-7s %s\n' "$name" "$pid" "$what"
        fi
    else
        printf '%-7s down     %-11s %s\n' "$name" "" "$what"
    fi
}

cmd_status() {
    local n
    status_line zk "$ZK_ADDR:$ZK_PORT"
    status_line single "http://$SINGLE_ADDR:$HTTP_PORT https $HTTPS_PORT tcp $SINGLE_TCP_PORT"
    for n in "${NODES[@]}"; do
        status_line "node$n" "http://$(node_addr "$n"):$HTTP_PORT tcp $(node_tcp_port "$n") shard $(node_shard "$n")"
    done
    echo "state dir: $STATE_DIR"
}

usage() {
    sed -n '/^# Usage:/,/^#   wipe/p' "$0" | sed 's/^# \{0,1\}//'
}

main() {
    local cmd=${1:-}
    shift || true
    case "$cmd" in
    install) cmd_install ;;
    start-single) cmd_start_single ;;
    tls-ca-path) cmd_tls_ca_path ;;
    start-cluster) cmd_start_cluster ;;
    stop) cmd_stop ;;
    stop-node) check_node_arg "${1:-}" && stop_proc "node$1" ;;
    start-node) cmd_start_node "${1:-}" ;;
    kill-node) check_node_arg "${1:-}" && kill_proc "node$1" ;;
    kill-single) kill_proc single ;;
    pause-node) check_node_arg "${1:-}" && signal_proc "node$1" STOP ;;
    resume-node) check_node_arg "${1:-}" && signal_proc "node$1" CONT ;;
    stop-zk) cmd_stop_zk ;;
    start-zk) cmd_start_zk ;;
    status) cmd_status ;;
    wipe) cmd_wipe ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"
