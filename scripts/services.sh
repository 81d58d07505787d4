#!/usr/bin/env bash
# The real servers Tessera's tests, benchmarks and CI run against, on
# 127.0.0.1: OpenSearch 2.19.4 and Apache Kafka 4.1.1 (one KRaft node that
# is both broker and controller). Both come from Maven Central through `mvn`
# (no Docker, no other download), are cached under $TESSERA_SERVICES_DIR
# (default <repo>/.services, ignored by git) and start with small heaps.
#
#   scripts/services.sh up [opensearch|kafka|all]       start with fresh, empty data and wait
#                                                       until healthy; a running one is kept
#   scripts/services.sh down [opensearch|kafka|all]     stop what this script started
#   scripts/services.sh restart [kafka|opensearch|all]  stop and start again on the same data
#   scripts/services.sh status                          running or stopped, pid, address, health
#   scripts/services.sh env                             export lines for the tests:
#       eval "$(scripts/services.sh env)"   # TESSERA_TEST_OPENSEARCH_URL, TESSERA_TEST_KAFKA_BROKERS
#
# Environment: TESSERA_SERVICES_DIR (cache, data, logs, pids),
# TESSERA_OPENSEARCH_PORT (9200; its transport port is this + 100),
# TESSERA_KAFKA_PORT (9092), TESSERA_KAFKA_CONTROLLER_PORT (9093),
# TESSERA_SERVICES_TIMEOUT (seconds to wait for health, 180),
# TESSERA_SERVICES_USER (tessera-svc: runs OpenSearch when this runs as root),
# JAVA_HOME / TESSERA_JAVA_HOME (a Java 17 to 23).
set -euo pipefail

OPENSEARCH_VERSION=2.19.4
OPENSEARCH_ARTIFACT=org.opensearch.distribution.integ-test-zip:opensearch:$OPENSEARCH_VERSION:zip
KAFKA_VERSION=4.1.1
# Kafka 4.1 logs through slf4j 1.7.36 and ships log4j2 2.24.3 with the slf4j
# 1.x binding (log4j-slf4j-impl); its POM leaves all three out.
LOG4J_VERSION=2.24.3
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

say() { printf '%s\n' "$*" >&2; }
die() {
    say "services.sh: $*"
    exit 1
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${TESSERA_SERVICES_DIR:-$repo/.services}
os_port=${TESSERA_OPENSEARCH_PORT:-9200}
kafka_port=${TESSERA_KAFKA_PORT:-9092}
kafka_controller_port=${TESSERA_KAFKA_CONTROLLER_PORT:-9093}
timeout=${TESSERA_SERVICES_TIMEOUT:-180}
svc_user=${TESSERA_SERVICES_USER:-tessera-svc}
stop_timeout=30
for n in "$os_port" "$kafka_port" "$kafka_controller_port" "$timeout"; do
    [[ $n =~ ^[0-9]+$ ]] || die "not a number: '$n' (TESSERA_*_PORT, TESSERA_SERVICES_TIMEOUT)"
done
os_transport_port=$((os_port + 100))

umask 022 # the OpenSearch user must be able to read what root unpacks
is_root() { [[ $EUID -eq 0 ]]; }

# --- where things live ------------------------------------------------------

kafka_lib=$dir/dist/kafka-$KAFKA_VERSION/lib
kafka_state=$dir/run/kafka

# OpenSearch refuses to run as root, so as root it runs as $svc_user, which
# must be able to reach its folder: every directory from / down needs the
# "others" execute bit (the user is in no other group). Otherwise OpenSearch
# gets its own copy under /var/tmp. Decided from modes alone, so that status
# and down find the same place without creating the user.
others_can_traverse() {
    local d
    d=$(readlink -m -- "$1")
    while [[ $d != / ]]; do
        if [[ -e $d ]] && (((8#$(stat -c %a -- "$d") & 1) == 0)); then
            return 1
        fi
        d=$(dirname -- "$d")
    done
}
os_base=$dir
if is_root && ! others_can_traverse "$dir"; then
    os_base=/var/tmp/tessera-services
fi
os_home=$os_base/dist/opensearch-$OPENSEARCH_VERSION
os_state=$os_base/run/opensearch # root's: pid, address, stdout.log
os_node=$os_state/node           # the server's own: config, data, logs, tmp

# --- processes ---------------------------------------------------------------

# A live process (zombies count as gone: a reaper may be slow).
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# The pid in $1/pid, if that process lives and is ours: its command line
# names its state folder, so a stale pid file whose number was reused by an
# unrelated process never gets that process killed.
our_pid() {
    local state=$1 pid
    [[ -f $state/pid ]] || return 1
    pid=$(<"$state/pid")
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$state" || return 1
    printf '%s' "$pid"
}

state_of() { if [[ $1 == opensearch ]]; then printf '%s' "$os_state"; else printf '%s' "$kafka_state"; fi; }

# The address a running server was started on (its ports may differ from
# the current environment's).
address_of() {
    local state
    state=$(state_of "$1")
    if [[ -f $state/address ]]; then
        cat "$state/address"
    elif [[ $1 == opensearch ]]; then
        printf 'http://127.0.0.1:%s' "$os_port"
    else
        printf '127.0.0.1:%s' "$kafka_port"
    fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

require_free_port() { # port what variable
    port_open "$1" || return 0
    local who=""
    command -v ss >/dev/null && who=$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:.*' | head -n 1 || true)
    die "port $1 ($2) is in use by something this script did not start${who:+ ($who)}; stop it or set $3"
}

# SIGTERM to every pid, then wait together; SIGKILL what outlives the timeout.
stop_pids() { # name=pid...
    local entry deadline=$((SECONDS + stop_timeout))
    for entry in "$@"; do kill -TERM "${entry#*=}" 2>/dev/null || true; done
    for entry in "$@"; do
        local name=${entry%%=*} pid=${entry#*=}
        while alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
        if alive "$pid"; then
            say "$name (pid $pid) did not stop within ${stop_timeout}s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
            local until=$((SECONDS + 5))
            while alive "$pid" && ((SECONDS < until)); do sleep 0.1; done
        fi
        rm -f "$(state_of "$name")/pid"
        say "$name stopped"
    done
}

stop() { # names...
    local name pid pids=()
    for name in "$@"; do
        if pid=$(our_pid "$(state_of "$name")"); then
            pids+=("$name=$pid")
        else
            rm -f "$(state_of "$name")/pid"
            say "$name is not running"
        fi
    done
    ((${#pids[@]} == 0)) || stop_pids "${pids[@]}"
}

# --- Java and the service user -----------------------------------------------

java_major() { # java home
    local v
    v=$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$1/release" 2>/dev/null)
    [[ -n $v ]] || v=$("$1/bin/java" -version 2>&1 | sed -n '1s/.*version "\([0-9]*\).*/\1/p')
    printf '%s' "$v"
}

# Kafka 4.1 needs Java 17 or newer; OpenSearch 2.19 needs the security
# manager, which Java 24 removed: so a Java from 17 to 23.
find_java_home() {
    local candidates=("${TESSERA_JAVA_HOME:-}" "${JAVA_HOME:-}") c major
    command -v java >/dev/null && candidates+=("$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")")
    candidates+=(/usr/lib/jvm/*)
    for c in "${candidates[@]}"; do
        [[ -n $c && -x $c/bin/java ]] || continue
        major=$(java_major "$c")
        if [[ -n $major ]] && ((major >= 17 && major <= 23)); then
            printf '%s' "$c"
            return
        fi
    done
    die "no Java 17 to 23 found (set JAVA_HOME): Kafka 4.1 needs 17+, OpenSearch 2.19 at most 23"
}
java=""
need_java() { [[ -n $java ]] || java=$(find_java_home)/bin/java; }

ensure_svc_user() {
    is_root || return 0
    id -u "$svc_user" >/dev/null 2>&1 && return
    say "creating the system user $svc_user (OpenSearch refuses to run as root)"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$svc_user"
}

# The command prefix that runs a command as $svc_user when root. setpriv
# execs (runuser and su fork and wait), so the pid of `"${as_svc[@]}" ... &`
# is the server's own pid.
as_svc_prefix() {
    as_svc=()
    if is_root; then
        as_svc=(setpriv --reuid="$(id -u "$svc_user")" --regid="$(id -g "$svc_user")" --init-groups --)
    fi
}

# --- fetching (Maven Central, through mvn) ----------------------------------

need_mvn() { command -v mvn >/dev/null || die "mvn is needed to fetch the servers from Maven Central (apt-get install maven)"; }

# mvn, its output kept in a log (even -q prints colour codes) and shown when
# it fails.
mvn_logged() { # log what mvn-args...
    local log=$1 what=$2
    shift 2
    if ! mvn -B -q "$@" >"$log" 2>&1; then
        cat "$log" >&2
        die "mvn could not fetch $what (its output: $log)"
    fi
}

fetch_opensearch() {
    local cached=$dir/dist/opensearch-$OPENSEARCH_VERSION
    if [[ ! -d $cached ]]; then
        need_mvn
        say "fetching OpenSearch $OPENSEARCH_VERSION ($OPENSEARCH_ARTIFACT) with mvn"
        local tmp=$cached.tmp
        rm -rf "$tmp" && mkdir -p "$tmp/zip"
        # copy needs no project: run it where there is no pom.xml.
        (cd "$tmp" && mvn_logged "$dir/dist/mvn-opensearch.log" "$OPENSEARCH_ARTIFACT" \
            "$DEPENDENCY_PLUGIN:copy" -Dartifact="$OPENSEARCH_ARTIFACT" -DoutputDirectory="$tmp/zip")
        local zip=$tmp/zip/opensearch-$OPENSEARCH_VERSION.zip
        if command -v unzip >/dev/null; then
            unzip -q "$zip" -d "$tmp"
        else
            (cd "$tmp" && "$(dirname "$java")/jar" xf "$zip")
            chmod +x "$tmp/opensearch-$OPENSEARCH_VERSION/bin/"*
        fi
        # Unpacked aside and renamed: a folder that exists is complete.
        mv "$tmp/opensearch-$OPENSEARCH_VERSION" "$cached"
        rm -rf "$tmp"
    fi
    if [[ $os_home != "$cached" && ! -d $os_home ]]; then
        mkdir -p "$(dirname "$os_home")"
        rm -rf "$os_home.tmp"
        cp -a "$cached" "$os_home.tmp" && mv "$os_home.tmp" "$os_home"
    fi
}

fetch_kafka() {
    [[ -d $kafka_lib ]] && return
    need_mvn
    say "fetching Apache Kafka $KAFKA_VERSION and its runtime dependencies with mvn"
    local build=$dir/dist/kafka-$KAFKA_VERSION.build
    mkdir -p "$build"
    # kafka-tools: TopicCommand (the health check), the console producer and
    # consumer, for tests and people.
    cat >"$build/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tessera.services</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
    rm -rf "$kafka_lib.tmp"
    (cd "$build" && mvn_logged "$build/mvn.log" "Kafka $KAFKA_VERSION" \
        "$DEPENDENCY_PLUGIN:copy-dependencies" -DincludeScope=runtime -DoutputDirectory="$kafka_lib.tmp")
    mv "$kafka_lib.tmp" "$kafka_lib"
}

# --- OpenSearch --------------------------------------------------------------

launch_opensearch() { # fresh: 1 wipes the data, 0 keeps it
    local fresh=$1
    ensure_svc_user
    if [[ $os_base != "$dir" ]]; then
        say "note: $svc_user cannot traverse $dir (a folder on its path lacks o+x); OpenSearch runs from $os_base"
    fi
    if ((fresh)); then
        rm -rf "$os_state"
    else
        rm -rf "$os_node/config" "$os_node/tmp"
    fi
    mkdir -p "$os_state" "$os_node/config" "$os_node/data" "$os_node/logs" "$os_node/tmp"
    # A config folder per run: the unpacked distribution stays read-only, and
    # jvm.options' relative paths (resolved from the distribution, which
    # OpenSearch's launcher cd's into) point into the node's folder instead.
    cp -r "$os_home/config/jvm.options.d" "$os_home/config/log4j2.properties" "$os_node/config/"
    sed -e '/^-Xm[sx]/d' \
        -e "s#^-XX:HeapDumpPath=data#-XX:HeapDumpPath=$os_node/data#" \
        -e "s#^-XX:ErrorFile=logs/#-XX:ErrorFile=$os_node/logs/#" \
        -e "s#logs/gc\.log#$os_node/logs/gc.log#" \
        -e 's#filecount=32,filesize=64m#filecount=2,filesize=16m#' \
        "$os_home/config/jvm.options" >"$os_node/config/jvm.options"
    # mmap needs vm.max_map_count >= 262144, often lower (65530) and not ours
    # to raise in a container: then niofs, slower but enough for tests.
    local mmap=false
    (($(cat /proc/sys/vm/max_map_count 2>/dev/null || echo 0) >= 262144)) && mmap=true
    cat >"$os_node/config/opensearch.yml" <<EOF
cluster.name: tessera-test
node.name: tessera-test
# One node on loopback: production bootstrap checks (heap, file descriptors,
# max_map_count) only warn instead of refusing to start.
discovery.type: single-node
network.host: 127.0.0.1
http.port: $os_port
transport.port: $os_transport_port
node.store.allow_mmap: $mmap
# Disks here may be nearly full: no watermarks (read-only indexes otherwise).
cluster.routing.allocation.disk.threshold_enabled: false
# Tests drop their indexes by pattern.
action.destructive_requires_name: false
EOF
    is_root && chown -R "$svc_user:" "$os_node"
    printf 'http://127.0.0.1:%s\n' "$os_port" >"$os_state/address"
    local jhome
    jhome=$(dirname "$(dirname "$java")")
    # A simple command (no function) after &: bash execs it in the forked
    # child, and setpriv, setsid, env and bin/opensearch exec in turn, so $!
    # is the JVM's pid. The paths go on the command line, which must name
    # $os_state from the first exec on (our_pid). setsid: a hang-up of the
    # terminal that ran `up` does not reach the server. 9>&-: the server
    # must not inherit (and hold) this script's lock.
    local as_svc
    as_svc_prefix
    "${as_svc[@]}" setsid env HOME="$os_node" OPENSEARCH_JAVA_HOME="$jhome" JAVA_HOME="$jhome" \
        OPENSEARCH_PATH_CONF="$os_node/config" OPENSEARCH_TMPDIR="$os_node/tmp" \
        OPENSEARCH_JAVA_OPTS="-Xms512m -Xmx512m" \
        "$os_home/bin/opensearch" -Epath.data="$os_node/data" -Epath.logs="$os_node/logs" \
        >>"$os_state/stdout.log" 2>&1 </dev/null 9>&- &
    echo $! >"$os_state/pid"
}

opensearch_healthy() {
    curl -fsS -m 10 -o /dev/null \
        "$(address_of opensearch)/_cluster/health?wait_for_status=yellow&timeout=5s" 2>/dev/null
}

# --- Kafka -------------------------------------------------------------------

# A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, not
# starting with '-' (as Kafka's Uuid.randomUuid; saves a JVM start).
kafka_cluster_id() {
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
        [[ $id != -* ]] && break
    done
    printf '%s' "$id"
}

kafka_tool() { # class args...: a Kafka tool from the same jars, small and quiet
    "$java" -Xmx128m -XX:TieredStopAtLevel=1 \
        -Dlog4j2.configurationFile="$kafka_state/tools-log4j2.properties" \
        -cp "$kafka_lib/*" "$@"
}

launch_kafka() { # fresh: 1 formats new, empty storage, 0 keeps the data
    local fresh=$1
    ((fresh)) && rm -rf "$kafka_state"
    mkdir -p "$kafka_state/data"
    cat >"$kafka_state/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$kafka_controller_port
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$kafka_port,CONTROLLER://127.0.0.1:$kafka_controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$kafka_port
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$kafka_state/data
num.partitions=4
auto.create.topics.enable=true
# One node: every internal topic with one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Consumer groups start at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0
EOF
    cat >"$kafka_state/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $kafka_state/kafka.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
EOF
    cat >"$kafka_state/tools-log4j2.properties" <<EOF
status = error
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = err
EOF
    # Bounds the health check's metadata request.
    printf 'request.timeout.ms=5000\ndefault.api.timeout.ms=10000\n' >"$kafka_state/tools.properties"
    if ((fresh)); then
        # Static voters (controller.quorum.voters): format needs no
        # --standalone / --initial-controllers.
        kafka_tool kafka.tools.StorageTool format -t "$(kafka_cluster_id)" \
            -c "$kafka_state/server.properties" >"$kafka_state/format.log" 2>&1 || {
            cat "$kafka_state/format.log" >&2
            die "formatting Kafka's storage failed"
        }
    fi
    printf '127.0.0.1:%s\n' "$kafka_port" >"$kafka_state/address"
    setsid "$java" -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$kafka_state/log4j2.properties" \
        -cp "$kafka_lib/*" kafka.Kafka "$kafka_state/server.properties" \
        >>"$kafka_state/stdout.log" 2>&1 </dev/null 9>&- &
    echo $! >"$kafka_state/pid"
}

kafka_healthy() {
    local address
    address=$(address_of kafka)
    port_open "${address##*:}" || return 1
    # A metadata request answered: the broker serves, not just listens.
    timeout 30 "$java" -Xmx128m -XX:TieredStopAtLevel=1 \
        -Dlog4j2.configurationFile="$kafka_state/tools-log4j2.properties" -cp "$kafka_lib/*" \
        org.apache.kafka.tools.TopicCommand --bootstrap-server "$address" \
        --command-config "$kafka_state/tools.properties" --list >/dev/null 2>&1
}

# --- up, restart, status, env ------------------------------------------------

healthy() { if [[ $1 == opensearch ]]; then opensearch_healthy; else kafka_healthy; fi; }

logs_of() {
    if [[ $1 == opensearch ]]; then
        printf '%s\n' "$os_state/stdout.log"
    else
        printf '%s\n' "$kafka_state/kafka.log" "$kafka_state/stdout.log"
    fi
}

wait_healthy() { # name deadline: 0 once healthy; 1 (log tail shown) when it died or timed out
    local name=$1 deadline=$2 state pid why=""
    state=$(state_of "$name")
    until healthy "$name"; do
        # Just launched: its pid file, not our_pid (a fork that has not
        # exec'd yet does not name its folder).
        pid=$(cat "$state/pid" 2>/dev/null || echo 0)
        if ! alive "$pid"; then
            why="exited"
        elif ((SECONDS >= deadline)); then
            why="was not healthy within ${timeout}s"
        else
            sleep 1
            continue
        fi
        say "$name $why; the end of its logs:"
        local log
        while read -r log; do
            [[ -s $log ]] || continue
            say "--- $log"
            tail -n 40 "$log" >&2
        done < <(logs_of "$name")
        return 1
    done
}

# Starts (fresh or on the kept data) those not running, then waits for all.
start() { # fresh names...
    local fresh=$1 name started=() failed=0
    shift
    for name in "$@"; do
        our_pid "$(state_of "$name")" >/dev/null && continue
        if [[ $name == opensearch ]]; then
            require_free_port "$os_port" "OpenSearch HTTP" TESSERA_OPENSEARCH_PORT
            require_free_port "$os_transport_port" "OpenSearch transport" TESSERA_OPENSEARCH_PORT
        else
            require_free_port "$kafka_port" "Kafka" TESSERA_KAFKA_PORT
            require_free_port "$kafka_controller_port" "Kafka controller" TESSERA_KAFKA_CONTROLLER_PORT
        fi
    done
    for name in "$@"; do
        our_pid "$(state_of "$name")" >/dev/null && continue
        "fetch_$name"
    done
    # Both start at once: their start-ups overlap.
    for name in "$@"; do
        if pid=$(our_pid "$(state_of "$name")"); then
            say "$name is already running (pid $pid)"
            continue
        fi
        say "starting $name"
        "launch_$name" "$fresh"
        started+=("$name")
    done
    local deadline=$((SECONDS + timeout))
    for name in "$@"; do
        wait_healthy "$name" "$deadline" || failed=1
    done
    if ((failed)); then
        # Leave nothing half-started behind.
        ((${#started[@]} == 0)) || stop "${started[@]}"
        exit 1
    fi
    for name in "$@"; do
        printf '%-10s %s\n' "$name" "$(address_of "$name")"
    done
}

status() {
    local name pid address
    for name in opensearch kafka; do
        if ! pid=$(our_pid "$(state_of "$name")"); then
            printf '%-10s stopped\n' "$name"
            continue
        fi
        address=$(address_of "$name")
        if [[ $name == opensearch ]]; then
            local version health
            version=$(curl -fsS -m 5 "$address/" 2>/dev/null |
                sed -n 's/.*"number" *: *"\([^"]*\)".*/\1/p' | head -n 1 || true)
            health=$(curl -fsS -m 5 "$address/_cluster/health" 2>/dev/null |
                sed -n 's/.*"status" *: *"\([a-z]*\)".*/\1/p' | head -n 1 || true)
            printf '%-10s running  pid %-7s %s  version %s  health %s\n' "$name" "$pid" "$address" \
                "${version:-?}" "${health:-unreachable}"
        else
            local listening=listening
            port_open "${address##*:}" || listening="not listening"
            printf '%-10s running  pid %-7s %s  version %s  %s\n' "$name" "$pid" "$address" \
                "$KAFKA_VERSION" "$listening"
        fi
    done
}

env_lines() {
    if our_pid "$os_state" >/dev/null; then
        printf 'export TESSERA_TEST_OPENSEARCH_URL=%s\n' "$(address_of opensearch)"
    fi
    if our_pid "$kafka_state" >/dev/null; then
        printf 'export TESSERA_TEST_KAFKA_BROKERS=%s\n' "$(address_of kafka)"
    fi
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
}

# --- main --------------------------------------------------------------------

command=${1:-}
case ${2:-all} in
opensearch | kafka) names=("$2") ;;
all) names=(opensearch kafka) ;;
*) usage ;;
esac

case $command in
up | down | restart)
    mkdir -p "$dir"
    # One up/down/restart at a time on this folder.
    exec 9>"$dir/.lock"
    flock 9
    ;;
esac

case $command in
up | restart) need_java ;;
esac

case $command in
up) start 1 "${names[@]}" ;;
down) stop "${names[@]}" ;;
restart)
    [[ ${names[*]} != *opensearch* || -d $os_node/data ]] || die "opensearch has no data here to restart on: use up"
    [[ ${names[*]} != *kafka* || -d $kafka_state/data ]] || die "kafka has no data here to restart on: use up"
    stop "${names[@]}"
    start 0 "${names[@]}"
    ;;
status) status ;;
env) env_lines ;;
*) usage ;;
esac
