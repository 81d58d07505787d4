#!/usr/bin/env bash
# The real servers Tessera's tests, benchmarks and CI use, on 127.0.0.1:
# OpenSearch 2.19.4 and Apache Kafka 4.1.1 (one KRaft broker+controller).
# Both come from Maven Central (the only place this project fetches servers
# from), are cached under $TESSERA_SERVICES_DIR (default: <repo>/.services,
# ignored by git), and start with small heaps.
#
#   scripts/services.sh up [opensearch|kafka|all]     start (fresh, empty data); no-op if running
#   scripts/services.sh down [opensearch|kafka|all]   stop what this script started
#   scripts/services.sh status                        what runs, where
#   scripts/services.sh env                           export lines for the tests:
#       eval "$(scripts/services.sh env)"
#
# Ports: TESSERA_OPENSEARCH_PORT (9200; transport +100), TESSERA_KAFKA_PORT
# (9092), TESSERA_KAFKA_CONTROLLER_PORT (9093).
set -euo pipefail

OPENSEARCH_VERSION=2.19.4
KAFKA_VERSION=4.1.1
LOG4J_VERSION=2.24.3
SERVICE_USER=tessera-svc

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${TESSERA_SERVICES_DIR:-$repo/.services}
os_port=${TESSERA_OPENSEARCH_PORT:-9200}
os_transport=$((os_port + 100))
kafka_port=${TESSERA_KAFKA_PORT:-9092}
kafka_controller=${TESSERA_KAFKA_CONTROLLER_PORT:-9093}

say() { printf '%s\n' "$*" >&2; }
die() { say "services.sh: $*"; exit 1; }

java_home() {
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        printf '%s' "$JAVA_HOME"
    else
        local java
        java=$(command -v java) || die "java is not installed (Java 17 runs both servers)"
        dirname "$(dirname "$(readlink -f "$java")")"
    fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running() { # pidfile
    [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# OpenSearch refuses to run as root: as root, run it as an unprivileged
# user, from a folder that user can read (every parent must be traversable).
as_service_user() {
    if [[ $(id -u) -ne 0 ]]; then
        "$@"
        return
    fi
    id "$SERVICE_USER" >/dev/null 2>&1 ||
        useradd --system --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
    runuser -u "$SERVICE_USER" -- "$@"
}

check_traversable() {
    [[ $(id -u) -ne 0 ]] && return
    local d=$dir
    while [[ "$d" != / ]]; do
        local mode
        mode=$(stat -c %a "$d")
        (( (8#$mode & 8#001) != 0 )) || die "$d is not traversable by $SERVICE_USER; set TESSERA_SERVICES_DIR to a folder under /var/tmp"
        d=$(dirname "$d")
    done
}

fetch_opensearch() {
    local home=$dir/dist/opensearch-$OPENSEARCH_VERSION
    [[ -x $home/bin/opensearch ]] && return
    say "fetching OpenSearch $OPENSEARCH_VERSION from Maven Central"
    local artifact=org.opensearch.distribution.integ-test-zip:opensearch:$OPENSEARCH_VERSION:zip
    mvn -q dependency:get -Dartifact="$artifact" -Dtransitive=false >&2
    local zip=${MAVEN_REPOSITORY:-$HOME/.m2/repository}/org/opensearch/distribution/integ-test-zip/opensearch/$OPENSEARCH_VERSION/opensearch-$OPENSEARCH_VERSION.zip
    mkdir -p "$dir/dist"
    rm -rf "$home.tmp" && mkdir -p "$home.tmp"
    unzip -q "$zip" -d "$home.tmp"
    mv "$home.tmp/opensearch-$OPENSEARCH_VERSION" "$home" && rmdir "$home.tmp"
}

fetch_kafka() {
    local lib=$dir/dist/kafka-$KAFKA_VERSION/lib
    [[ -f $lib/kafka_2.13-$KAFKA_VERSION.jar ]] && return
    say "fetching Apache Kafka $KAFKA_VERSION from Maven Central"
    local build=$dir/dist/kafka-$KAFKA_VERSION.build
    mkdir -p "$build"
    # Kafka's POM leaves logging out: log4j2 with the slf4j 1.x binding it uses.
    cat >"$build/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tessera</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
    (cd "$build" && mvn -q dependency:copy-dependencies -DoutputDirectory="$lib.tmp" -DincludeScope=runtime >&2)
    rm -rf "$lib" && mv "$lib.tmp" "$lib"
}

wait_for() { # what seconds log command...
    local what=$1 seconds=$2 log=$3
    shift 3
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            say "$what did not become healthy within ${seconds}s; the end of $log:"
            tail -n 40 "$log" >&2 || true
            return 1
        fi
        sleep 1
    done
}

opensearch_healthy() {
    curl -fsS -m 5 "http://127.0.0.1:$os_port/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1
}

up_opensearch() {
    local run=$dir/run/opensearch
    if running "$run/pid"; then
        say "opensearch already running (pid $(cat "$run/pid"))"
    else
        port_open "$os_port" && die "port $os_port is taken by something this script did not start"
        fetch_opensearch
        check_traversable
        rm -rf "$run" && mkdir -p "$run/data" "$run/logs"
        local home=$dir/dist/opensearch-$OPENSEARCH_VERSION
        [[ $(id -u) -eq 0 ]] && as_service_user true && chown -R "$SERVICE_USER" "$home" "$run"
        local jhome
        jhome=$(java_home)
        # Loopback only, so production bootstrap checks do not apply; mmap off
        # for machines with a low vm.max_map_count; no disk watermarks
        # (shared disks are often nearly full).
        as_service_user env OPENSEARCH_JAVA_HOME="$jhome" \
            OPENSEARCH_JAVA_OPTS="-Xms512m -Xmx512m" \
            "$home/bin/opensearch" \
            -Ediscovery.type=single-node -Enetwork.host=127.0.0.1 \
            -Ehttp.port="$os_port" -Etransport.port="$os_transport" \
            -Epath.data="$run/data" -Epath.logs="$run/logs" \
            -Enode.store.allow_mmap=false \
            -Ecluster.routing.allocation.disk.threshold_enabled=false \
            -Eaction.destructive_requires_name=false \
            -p "$run/pid" \
            >"$run/stdout.log" 2>&1 </dev/null &
        # The JVM writes its own pid (-p): `down` signals OpenSearch itself,
        # not the runuser in front of it.
        wait_for opensearch 180 "$run/stdout.log" opensearch_healthy || { down_one opensearch; exit 1; }
    fi
    echo "opensearch http://127.0.0.1:$os_port"
}

kafka_healthy() {
    port_open "$kafka_port" &&
        java -cp "$dir/dist/kafka-$KAFKA_VERSION/lib/*" -Dlog4j2.configurationFile="$dir/run/kafka/log4j2.properties" \
            org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$kafka_port" --list >/dev/null 2>&1
}

up_kafka() {
    local run=$dir/run/kafka
    if running "$run/pid"; then
        say "kafka already running (pid $(cat "$run/pid"))"
    else
        port_open "$kafka_port" && die "port $kafka_port is taken by something this script did not start"
        port_open "$kafka_controller" && die "port $kafka_controller is taken by something this script did not start"
        fetch_kafka
        rm -rf "$run" && mkdir -p "$run/data"
        local lib=$dir/dist/kafka-$KAFKA_VERSION/lib
        cat >"$run/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$kafka_controller
listeners=PLAINTEXT://127.0.0.1:$kafka_port,CONTROLLER://127.0.0.1:$kafka_controller
advertised.listeners=PLAINTEXT://127.0.0.1:$kafka_port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$run/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
EOF
        cat >"$run/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $run/kafka.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
EOF
        local java
        java="$(java_home)/bin/java"
        local cluster
        cluster=$("$java" -cp "$lib/*" -Dlog4j2.configurationFile="$run/log4j2.properties" kafka.tools.StorageTool random-uuid)
        "$java" -cp "$lib/*" -Dlog4j2.configurationFile="$run/log4j2.properties" \
            kafka.tools.StorageTool format -t "$cluster" -c "$run/server.properties" >"$run/format.log" 2>&1 ||
            { cat "$run/format.log" >&2; die "formatting Kafka's storage failed"; }
        "$java" -Xms256m -Xmx512m -Dlog4j2.configurationFile="$run/log4j2.properties" \
            -cp "$lib/*" kafka.Kafka "$run/server.properties" >"$run/stdout.log" 2>&1 </dev/null &
        echo $! >"$run/pid"
        wait_for kafka 90 "$run/kafka.log" kafka_healthy || { down_one kafka; exit 1; }
    fi
    echo "kafka 127.0.0.1:$kafka_port"
}

down_one() { # name
    local pidfile=$dir/run/$1/pid
    if ! running "$pidfile"; then
        rm -f "$pidfile"
        say "$1 is not running"
        return
    fi
    local pid
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$1 did not stop in 30s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    say "$1 stopped"
}

status() {
    if running "$dir/run/opensearch/pid"; then
        local health
        health=$(curl -fsS -m 5 "http://127.0.0.1:$os_port/_cluster/health" 2>/dev/null | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p')
        echo "opensearch running  pid $(cat "$dir/run/opensearch/pid")  http://127.0.0.1:$os_port  $OPENSEARCH_VERSION ${health:-unreachable}"
    else
        echo "opensearch stopped"
    fi
    if running "$dir/run/kafka/pid"; then
        echo "kafka      running  pid $(cat "$dir/run/kafka/pid")  127.0.0.1:$kafka_port  $KAFKA_VERSION"
    else
        echo "kafka      stopped"
    fi
}

env_lines() {
    running "$dir/run/opensearch/pid" && echo "export TESSERA_TEST_OPENSEARCH_URL=http://127.0.0.1:$os_port"
    running "$dir/run/kafka/pid" && echo "export TESSERA_TEST_KAFKA_BROKERS=127.0.0.1:$kafka_port"
    true
}

which=${2:-all}
case "$which" in opensearch | kafka | all) ;; *) die "unknown server '$which' (opensearch, kafka or all)" ;; esac
mkdir -p "$dir"
case "${1:-}" in
up)
    [[ $which == kafka ]] || up_opensearch
    [[ $which == opensearch ]] || up_kafka
    ;;
down)
    [[ $which == kafka ]] || down_one opensearch
    [[ $which == opensearch ]] || down_one kafka
    ;;
status) status ;;
env) env_lines ;;
*)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
