#!/usr/bin/env bash
# bench/run.sh — the same load on loopback, in one run, against the bench
# backend directly, through two Trellis sidecars with mutual TLS, and through
# two HAProxy and two nginx instances configured as the same two-hop mTLS path
# (certificates from the Trellis CA); then HTTP/2 (h2load), gRPC (ghz), the
# RSS of a sidecar configured with 100 services, and the control plane at
# scale (1,000 proxies; bench/cp.sh). Appends a dated section with figures,
# ratios and the issue 3 targets to bench/RESULTS.md.
#
#   bench/run.sh                 # everything (about 6 minutes with ROUNDS=1)
#   bench/run.sh --direct-only   # only the app directly: checks the harness without the mesh
#   bench/run.sh --no-results    # do not touch bench/RESULTS.md
#   SKIP=nginx,h2 bench/run.sh   # leave parts out: haproxy nginx h2 grpc svc100 cp
#   ONLY=cp bench/run.sh         # only the control plane at scale (under a minute)
#
# Settings (environment): QPS=1000 CONNS=16 DURATION=15s MAX_CONNS=32
# MAX_DURATION=10s WARMUP=2s ROUNDS=1 READY_TIMEOUT=60 H2_DURATION=10s
# GRPC_DURATION=10s HAPROXY_NBTHREAD=2 NGINX_WORKERS=2 SERVICES=100
# FORTIO_VERSION=v1.68.2 GHZ_VERSION=v0.93.0, TRELLIS_BIN (a trellis binary
# to use instead of building ./cmd/trellis), CP_TIMEOUT=10m CP_FLAGS=
# CP_CONFIG_SIZES="100 1000" (bench/cp.sh). Every process it starts is
# stopped by PID on exit. Raw output: bench/out/<run>/.
set -euo pipefail

MODE=both
WRITE_RESULTS=1
while [[ $# -gt 0 ]]; do
	case "$1" in
	--direct-only) MODE=direct ;;
	--no-results) WRITE_RESULTS=0 ;;
	-h | --help)
		sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "run.sh: unknown argument $1 (try --help)" >&2
		exit 2
		;;
	esac
	shift
done

QPS=${QPS:-1000}
CONNS=${CONNS:-16}
DURATION=${DURATION:-15s}
MAX_CONNS=${MAX_CONNS:-32}
MAX_DURATION=${MAX_DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-1}
READY_TIMEOUT=${READY_TIMEOUT:-60}
H2_DURATION=${H2_DURATION:-10s}
GRPC_DURATION=${GRPC_DURATION:-10s}
HAPROXY_NBTHREAD=${HAPROXY_NBTHREAD:-2}
NGINX_WORKERS=${NGINX_WORKERS:-2}
SERVICES=${SERVICES:-100}
SKIP=${SKIP:-}
ONLY=${ONLY:-}
case "$ONLY" in
"") ;;
cp) MODE=cp ;;
*) echo "run.sh: ONLY=$ONLY: the only part that runs alone is cp" >&2; exit 2 ;;
esac
# fortio@latest (1.69+) needs grol.io/grol, which the module proxy here refuses;
# 1.68.2 is the last release without it. FORTIO_VERSION=latest to override.
FORTIO_VERSION=${FORTIO_VERSION:-v1.68.2}
# ghz@latest resolves to v0.93.0 through the module proxy here.
GHZ_VERSION=${GHZ_VERSION:-v0.93.0}
for d in "$DURATION" "$MAX_DURATION" "$WARMUP" "$H2_DURATION" "$GRPC_DURATION"; do
	[[ "$d" =~ ^[0-9]+s$ ]] || { echo "run.sh: durations are whole seconds like 15s, got $d" >&2; exit 2; }
done
[[ "$SERVICES" =~ ^[0-9]+$ && $SERVICES -ge 2 && $SERVICES -le 500 ]] || { echo "run.sh: SERVICES must be 2..500" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/peers.sh
source bench/peers.sh
# shellcheck source=bench/cp.sh
source bench/cp.sh
OUT=bench/out
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
RUN_DIR=$OUT/$RUN_ID
mkdir -p "$RUN_DIR"
BENCHTOOL=$OUT/benchtool
# TRELLIS_BIN: use that trellis binary instead of building ./cmd/trellis.
TRELLIS=${TRELLIS_BIN:-$OUT/trellis}
CERTS=$ROOT/$RUN_DIR/certs

log() { printf '%s run.sh: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
secs() { echo "${1%s}"; }
skipped() { [[ ",$SKIP," == *",$1,"* ]]; }
NOTES=() # lines for the report: what was skipped or failed, and why
note() { log "note: $*"; NOTES+=("$*"); }

# --- processes: every one we start is recorded and stopped by PID ----------
PIDS=()
stop_pid() { # stop_pid PID [SIGNAL]: signal, wait up to 15s, then SIGTERM (5s), then SIGKILL
	local pid=$1 sig=${2:-TERM} deadline=$((SECONDS + 15))
	kill -0 "$pid" 2>/dev/null || return 0
	kill -"$sig" "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
	if [[ $sig != TERM ]] && kill -0 "$pid" 2>/dev/null; then
		log "pid $pid still alive 15s after SIG$sig, sending SIGTERM"
		kill -TERM "$pid" 2>/dev/null || true
		deadline=$((SECONDS + 5))
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
	fi
	if kill -0 "$pid" 2>/dev/null; then
		log "pid $pid still alive, killing"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	local pid i
	# Last started first: trellis up and the peers before the app they call.
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		pid=${PIDS[i]}
		stop_pid "$pid"
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools ----------------------------------------------------------------
command -v go >/dev/null || die "go is not on PATH"
GOBIN_DIR=$(go env GOPATH)/bin
go_tool() { # go_tool NAME MODULE@VERSION: path of NAME, installing it with go install if missing
	local p
	p=$(command -v "$1" || true)
	if [[ -z "$p" && -x "$GOBIN_DIR/$1" ]]; then p=$GOBIN_DIR/$1; fi
	if [[ -z "$p" ]]; then
		log "installing $1 ($2, go install)"
		if (cd /tmp && GOFLAGS= timeout 600 go install "$2") >>"$RUN_DIR/go-install.log" 2>&1; then p=$GOBIN_DIR/$1; fi
	fi
	echo "$p"
}
APT_UPDATED=0
apt_tool() { # apt_tool COMMAND PACKAGE: path of COMMAND, installing PACKAGE with apt-get when root
	local p
	p=$(command -v "$1" || true)
	if [[ -z "$p" && $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
		log "installing $2 (apt-get)"
		if ! apt-get install -y -qq "$2" >>"$RUN_DIR/apt.log" 2>&1 && ((APT_UPDATED == 0)); then
			APT_UPDATED=1
			apt-get update -qq >>"$RUN_DIR/apt.log" 2>&1 && apt-get install -y -qq "$2" >>"$RUN_DIR/apt.log" 2>&1 || true
		fi
		p=$(command -v "$1" || true)
	fi
	echo "$p"
}
FORTIO= WRK= HAPROXY= NGINX= H2LOAD= GHZ=
if [[ $MODE != cp ]]; then
	FORTIO=$(go_tool fortio "fortio.org/fortio@$FORTIO_VERSION")
	[[ -n "$FORTIO" ]] || die "fortio is missing and go install failed (see $RUN_DIR/go-install.log)"
	WRK=$(apt_tool wrk wrk)
	[[ -n "$WRK" ]] || note "wrk not available: max rate measured with fortio -qps 0"
fi
if [[ $MODE == both ]]; then
	if ! skipped haproxy; then HAPROXY=$(apt_tool haproxy haproxy); [[ -n "$HAPROXY" ]] || note "HAProxy not available (apt-get install haproxy failed): HAProxy path skipped"; fi
	if ! skipped nginx; then NGINX=$(apt_tool nginx nginx); [[ -n "$NGINX" ]] || note "nginx not available (apt-get install nginx failed): nginx path skipped"; fi
	if ! skipped h2; then H2LOAD=$(apt_tool h2load nghttp2-client); [[ -n "$H2LOAD" ]] || note "h2load not available (apt-get install nghttp2-client failed): HTTP/2 skipped"; fi
	if ! skipped grpc; then GHZ=$(go_tool ghz "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"); [[ -n "$GHZ" ]] || note "ghz not available (go install failed): gRPC skipped"; fi
fi

log "building benchtool$(if [[ $MODE != direct && -z "${TRELLIS_BIN:-}" ]]; then echo ' and trellis'; fi)"
go build -o "$BENCHTOOL" ./bench/benchtool
if [[ $MODE != direct && -z "${TRELLIS_BIN:-}" ]]; then
	CGO_ENABLED=0 go build -o "$TRELLIS" ./cmd/trellis || die "go build ./cmd/trellis failed: fix the tree, or set TRELLIS_BIN to a trellis binary"
fi

FORTIO_VER=none WRK_VER=none
if [[ -n "$FORTIO" ]]; then FORTIO_VER=$("$FORTIO" version 2>/dev/null | head -1); fi
if [[ -n "$WRK" ]]; then WRK_VER=$("$WRK" -v 2>&1 | head -1 | awk '{print $2}' || true); fi
HAPROXY_VER=none NGINX_VER=none H2LOAD_VER=none GHZ_VER=none
if [[ -n "$HAPROXY" ]]; then HAPROXY_VER=$("$HAPROXY" -v 2>/dev/null | awk 'NR == 1 {print $3}'); fi
if [[ -n "$NGINX" ]]; then NGINX_VER=$("$NGINX" -v 2>&1 | awk -F/ '{print $2}'); fi
if [[ -n "$H2LOAD" ]]; then H2LOAD_VER=$("$H2LOAD" --version 2>/dev/null | awk '{print $2}'); fi
if [[ -n "$GHZ" ]]; then GHZ_VER=$(go version -m "$GHZ" 2>/dev/null | awk '$1 == "mod" {print $3}'); fi
OPENSSL_VER=$(openssl version 2>/dev/null | awk '{print $2}' || echo unknown)
CLK_TCK=$(getconf CLK_TCK)

# --- measurement helpers ----------------------------------------------------
tree_pids() { # tree_pids PID: PID and its children (nginx: master and workers)
	echo "$1"
	pgrep -P "$1" 2>/dev/null || true
}
cpu_ticks() { # cpu_ticks PID...: utime+stime of the processes and their children, in clock ticks
	local pid p stat rest total=0
	for pid in "$@"; do
		for p in $(tree_pids "$pid"); do
			stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
			rest=${stat##*) }
			read -r -a f <<<"$rest"
			total=$((total + f[11] + f[12]))
		done
	done
	echo "$total"
}
rss_mib() { # rss_mib FIELD PID: VmRSS or VmHWM of PID and its children, summed, in MiB
	local p files=()
	for p in $(tree_pids "$2"); do files+=("/proc/$p/status"); done
	awk -v f="$1:" '$1 == f {s += $2} END {printf "%.1f", s / 1024}' "${files[@]}" 2>/dev/null || echo "?"
}
smaps_mib() { # smaps_mib PID: "RSS | anonymous | file-backed | PSS" in MiB, from smaps_rollup
	awk '$1 == "Rss:" {r = $2} $1 == "Anonymous:" {a = $2} $1 == "Pss:" {p = $2}
		END {printf "%.1f | %.1f | %.1f | %.1f", r / 1024, a / 1024, (r - a) / 1024, p / 1024}' "/proc/$1/smaps_rollup" 2>/dev/null || echo "? | ? | ? | ?"
}
rss_list() { # rss_list FIELD PID...: "a / b" MiB, one per proxy
	local field=$1 pid out=""
	shift
	for pid in "$@"; do out+="${out:+ / }$(rss_mib "$field" "$pid")"; done
	echo "$out"
}
wait_http() { # wait_http URL WORKLOAD SECONDS
	local deadline=$((SECONDS + $3))
	until "$BENCHTOOL" whoami "$1" "$2" >/dev/null 2>&1; do
		((SECONDS < deadline)) || { "$BENCHTOOL" whoami "$1" "$2" || true; return 1; }
		sleep 0.2
	done
}
wait_port() { # wait_port HOST:PORT SECONDS: until something accepts TCP there
	local deadline=$((SECONDS + $2))
	until (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}
per_1k() { # per_1k TICKS SECONDS RPS NPROC: vCPU per 1,000 rps per process
	awk -v d="$1" -v hz="$CLK_TCK" -v s="$2" -v q="$3" -v n="$4" \
		'BEGIN { if (q > 0 && n > 0) printf "%.3f", d / hz / s / (q / 1000) / n; else print "?" }'
}

FIXED_CMD="fortio load -qps $QPS -c $CONNS -t $DURATION -r 0.00001 -p \"50,99,99.9\" -json FILE http://ADDR/"
if [[ -n "$WRK" ]]; then
	MAX_CMD="wrk -t2 -c$MAX_CONNS -d$MAX_DURATION --latency http://ADDR/"
else
	MAX_CMD="fortio load -qps 0 -c $MAX_CONNS -t $MAX_DURATION -json FILE http://ADDR/"
fi

# measure LABEL ADDR PID...: warm-up, fixed rate, max rate against http://ADDR/;
# the CPU of PIDs (the proxies, or the app when direct) is sampled around the
# fixed-rate run. Sets R_* variables.
measure() {
	local label=$1 addr=$2
	shift 2
	local url="http://$addr/" t0 t1 bound line
	bound=$(($(secs "$DURATION") + 30))
	log "$label: warm-up $WARMUP"
	timeout "$bound" "$FORTIO" load -qps 0 -c "$CONNS" -t "$WARMUP" -loglevel Error "$url" >"$RUN_DIR/$label-warmup.txt" 2>&1 ||
		die "$label: warm-up failed (see $RUN_DIR/$label-warmup.txt)"
	log "$label: $QPS qps, $CONNS connections, $DURATION"
	t0=$(cpu_ticks "$@")
	timeout "$bound" "$FORTIO" load -qps "$QPS" -c "$CONNS" -t "$DURATION" -r 0.00001 -p "50,99,99.9" \
		-loglevel Warning -json "$RUN_DIR/$label-fixed.json" "$url" >"$RUN_DIR/$label-fixed.txt" 2>&1 ||
		die "$label: fortio failed (see $RUN_DIR/$label-fixed.txt)"
	t1=$(cpu_ticks "$@")
	line=$("$BENCHTOOL" fortio "$RUN_DIR/$label-fixed.json")
	read -r R_P50 R_P99 R_P999 R_QPS R_OK R_ERRS <<<"$line"
	R_VCPU=$(per_1k $((t1 - t0)) "$(secs "$DURATION")" "$R_QPS" $#)
	bound=$(($(secs "$MAX_DURATION") + 30))
	log "$label: max rate, $MAX_CONNS connections, $MAX_DURATION"
	if [[ -n "$WRK" ]]; then
		timeout "$bound" "$WRK" -t2 -c"$MAX_CONNS" -d"$MAX_DURATION" --latency "$url" >"$RUN_DIR/$label-max.txt" 2>&1 ||
			die "$label: wrk failed (see $RUN_DIR/$label-max.txt)"
		R_MAX=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$RUN_DIR/$label-max.txt")
		R_MAX_ERRS=$(awk '/Non-2xx or 3xx responses:/ {n += $NF} /Socket errors:/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' "$RUN_DIR/$label-max.txt")
	else
		timeout "$bound" "$FORTIO" load -qps 0 -c "$MAX_CONNS" -t "$MAX_DURATION" -loglevel Warning \
			-json "$RUN_DIR/$label-max.json" "$url" >"$RUN_DIR/$label-max.txt" 2>&1 ||
			die "$label: fortio max rate failed (see $RUN_DIR/$label-max.txt)"
		line=$("$BENCHTOOL" fortio "$RUN_DIR/$label-max.json")
		read -r _ _ _ R_MAX _ R_MAX_ERRS <<<"$line"
		R_MAX=${R_MAX%.*}
	fi
	log "$label: p50 ${R_P50}µs p99 ${R_P99}µs p99.9 ${R_P999}µs at ${R_QPS} qps ($R_ERRS errors); max ${R_MAX} rps; ${R_VCPU} vCPU per 1k rps per process"
}

ROWS=()
row() { # row CELL...: one Markdown table row into ROWS
	local IFS='|' s
	s="$*"
	ROWS+=("| ${s//|/ | } |")
}

# --- the paths ----------------------------------------------------------------
# Each HTTP/1.1 path: P_ADDR (where the load goes), P_PIDS (processes whose
# CPU and RSS are the path's cost), P_WHAT (a line for the report).
declare -A P_ADDR P_PIDS P_WHAT P_NAME P_IDLE P_HWM
PATHS=()
add_path() { # add_path KEY NAME ADDR "PID..." WHAT
	PATHS+=("$1")
	P_NAME[$1]=$2 P_ADDR[$1]=$3 P_PIDS[$1]=$4 P_WHAT[$1]=$5
	# shellcheck disable=SC2086
	P_IDLE[$1]=$(rss_list VmRSS $4)
}

start_direct() {
	DIRECT_ADDR=127.0.0.1:$("$BENCHTOOL" freeport)
	TRELLIS_APP_ADDR=$DIRECT_ADDR TRELLIS_WORKLOAD=backend-direct TRELLIS_SERVICE=backend \
		"$BENCHTOOL" demo-app bench-backend >"$RUN_DIR/direct-app.log" 2>&1 &
	DIRECT_PID=$!
	PIDS+=("$DIRECT_PID")
	wait_http "http://$DIRECT_ADDR/whoami" backend-direct 10 || die "bench-backend did not come up (see $RUN_DIR/direct-app.log)"
	if [[ -n "$GHZ" ]]; then
		# grpc-echo outside the mesh, for ghz direct and through HAProxy.
		GRPC_DIRECT_ADDR=127.0.0.1:$("$BENCHTOOL" freeport)
		TRELLIS_APP_ADDR=$GRPC_DIRECT_ADDR TRELLIS_WORKLOAD=grpc-echo-direct TRELLIS_SERVICE=grpc-echo \
			"$BENCHTOOL" demo-app grpc-echo >"$RUN_DIR/grpc-direct-app.log" 2>&1 &
		GRPC_DIRECT_PID=$!
		PIDS+=("$GRPC_DIRECT_PID")
		wait_port "$GRPC_DIRECT_ADDR" 10 || { note "grpc-echo did not come up (see $RUN_DIR/grpc-direct-app.log): gRPC skipped"; GHZ=; }
	fi
	add_path direct "direct" "$DIRECT_ADDR" "$DIRECT_PID" \
		"bench-backend alone on 127.0.0.1 (\`benchtool demo-app bench-backend\`); it also serves the HAProxy and nginx paths; CPU and RSS columns are the app's"
}

descends_from() { # descends_from PID ANCESTOR: is PID a descendant of ANCESTOR?
	local pid=$1 stat rest
	while [[ -n "$pid" && "$pid" -gt 1 ]]; do
		stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
		rest=${stat##*) }
		pid=$(awk '{print $2}' <<<"$rest")
		[[ "$pid" == "$2" ]] && return 0
	done
	return 1
}
# start_mesh FILE CLIENT BACKEND...: trellis up -f FILE; waits until CLIENT
# and every BACKEND are ready; sets CONTROL, UP_PID, UP_CMD, OUTBOUND[BACKEND]
# (CLIENT's outbound port for its service), APP[BACKEND], SIDECAR[workload].
declare -A OUTBOUND APP SIDECAR
start_mesh() {
	local file=$1 client=$2 p1 p2 deadline help b w pid p tag
	shift 2
	tag=$(basename "$file" .yaml)
	p1=$("$BENCHTOOL" freeport)
	p2=$("$BENCHTOOL" freeport)
	CONTROL=http://127.0.0.1:$p1
	# The admin API flag of `trellis up` is --admin-addr (--control-addr in early plans).
	local admin_flag=--admin-addr
	help=$(timeout 10 "$TRELLIS" up --help 2>&1 || true)
	if [[ $help == *--control-addr* ]]; then admin_flag=--control-addr; fi
	UP_CMD="trellis up -f $file $admin_flag 127.0.0.1:$p1 --xds-addr 127.0.0.1:$p2"
	"$TRELLIS" up -f "$file" "$admin_flag" "127.0.0.1:$p1" --xds-addr "127.0.0.1:$p2" >"$RUN_DIR/up-$tag.log" 2>&1 &
	UP_PID=$!
	PIDS+=("$UP_PID")
	log "$UP_CMD (pid $UP_PID)"
	for b in "$@"; do
		deadline=$((SECONDS + READY_TIMEOUT))
		READY=false
		while [[ $READY != true ]]; do
			kill -0 "$UP_PID" 2>/dev/null || { tail -20 "$RUN_DIR/up-$tag.log" >&2; die "trellis up exited (see $RUN_DIR/up-$tag.log)"; }
			((SECONDS < deadline)) || { tail -20 "$RUN_DIR/up-$tag.log" >&2; die "mesh not ready after ${READY_TIMEOUT}s (see $RUN_DIR/status-$tag.json)"; }
			"$TRELLIS" status -o json --control "$CONTROL" >"$RUN_DIR/status-$tag.json" 2>"$RUN_DIR/status.err" || { sleep 0.5; continue; }
			eval "$("$BENCHTOOL" status "$RUN_DIR/status-$tag.json" "$client" "$b")"
			[[ $READY == true ]] || sleep 0.5
		done
		OUTBOUND[$b]=$CLIENT_OUTBOUND APP[$b]=$BACKEND_APP
		log "$tag ready: $client outbound $CLIENT_OUTBOUND → $b inbound $BACKEND_INBOUND → app $BACKEND_APP"
	done
	for w in "$client" "$@"; do
		# Only descendants of our trellis up: another mesh on this machine may
		# have workloads of the same names.
		pid=
		for p in $(pgrep -f " proxy .*--name[= ]$w( |$)" || true); do
			if descends_from "$p" "$UP_PID"; then pid=$p && break; fi
		done
		[[ -n "$pid" ]] || die "no sidecar process of trellis up (pid $UP_PID) found for $w (pgrep -f ' proxy .*--name $w')"
		SIDECAR[$w]=$pid
		PIDS+=("$pid") # stopped by trellis up normally; this only catches strays
	done
	# Apps and sidecars are trellis up's children: record them so that none
	# outlives the run even if trellis up has to be killed.
	for pid in $(pgrep -P "$UP_PID" || true); do PIDS+=("$pid"); done
}
stop_mesh() {
	log "stopping trellis up (SIGINT)"
	stop_pid "$UP_PID" INT
}

start_trellis() {
	start_mesh bench/mesh.yaml client-v1 backend-v1
	MESH_UP_CMD=$UP_CMD
	MESH_CONTROL=$CONTROL
	local out=${OUTBOUND[backend-v1]}
	wait_http "http://$out/whoami" backend-v1 20 || die "request through the sidecars did not reach backend-v1"
	"$BENCHTOOL" whoami "http://$out/whoami" backend-v1 | tee "$RUN_DIR/mesh-whoami.txt" >&2
	grep -q 'spiffe://' "$RUN_DIR/mesh-whoami.txt" || note "the app saw no SPIFFE x-forwarded-client-cert through the Trellis sidecars: is mTLS on?"
	add_path trellis "Trellis ×2, mTLS" "$out" "${SIDECAR[client-v1]} ${SIDECAR[backend-v1]}" \
		"\`$UP_CMD\`; load to client-v1's outbound port for backend → client-v1 sidecar → mTLS 1.3 → backend-v1 sidecar → bench-backend (run by trellis up); CPU and RSS per sidecar"
}

# HAProxy and nginx: two instances each, certificates from the Trellis CA.
# check_mtls NAME HOST:PORT CERT: B must refuse a TLS client without a
# certificate and answer one with a mesh SVID over TLS 1.3.
check_mtls() {
	local name=$1 addr=$2 cert=$3 out
	command -v curl >/dev/null || { note "curl not available: mTLS of $name not checked"; return 0; }
	if curl -skf -m 5 -o /dev/null "https://$addr/whoami" 2>/dev/null; then # nginx refuses with HTTP 400, HAProxy in the handshake
		note "$name B answered a client without a certificate: client certificates are NOT enforced"
	fi
	out=$(curl -sk -v -m 5 --cert "$CERTS/$cert.crt" --key "$CERTS/$cert.key" "https://$addr/whoami" 2>&1) || true
	if [[ $out == *"SSL connection using TLSv1.3"* && $out == *"backend-direct"* ]]; then
		log "$name: B requires a client certificate and speaks TLS 1.3 (checked with curl)"
	else
		note "$name: a client with a mesh SVID got no TLS 1.3 answer from B (see $RUN_DIR/$name-mtls.txt)"
		echo "$out" >"$RUN_DIR/$name-mtls.txt"
	fi
}
start_peer() { # start_peer NAME LOG CMD...: run a peer in the foreground of a background job; sets PEER_PID
	local name=$1 logf=$2
	shift 2
	"$@" >"$logf" 2>&1 &
	PEER_PID=$!
	PIDS+=("$PEER_PID")
	sleep 0.3
	kill -0 "$PEER_PID" 2>/dev/null || { tail -5 "$logf" >&2; return 1; }
	log "$name started (pid $PEER_PID): $*"
}
start_haproxy() {
	local a_h1 a_h2 a_g b_h1 b_h2 b_g cfg_a cfg_b pa pb ports
	a_h1=$("$BENCHTOOL" freeport) a_h2=$("$BENCHTOOL" freeport) a_g=$("$BENCHTOOL" freeport)
	b_h1=$("$BENCHTOOL" freeport) b_h2=$("$BENCHTOOL" freeport) b_g=$("$BENCHTOOL" freeport)
	ports=("$a_h1" "$a_h2" "$a_g" "$b_h1" "$b_h2" "$b_g" "$DIRECT_ADDR" "${GRPC_DIRECT_ADDR:-127.0.0.1:9}")
	cfg_b=$(haproxy_config haproxy-b "$CERTS" "$HAPROXY_NBTHREAD" "${ports[@]}")
	cfg_a=$(haproxy_config haproxy-a "$CERTS" "$HAPROXY_NBTHREAD" "${ports[@]}")
	"$HAPROXY" -c -q -f "$cfg_a" >"$RUN_DIR/haproxy-check.log" 2>&1 && "$HAPROXY" -c -q -f "$cfg_b" >>"$RUN_DIR/haproxy-check.log" 2>&1 ||
		{ note "HAProxy rejected its config (see $RUN_DIR/haproxy-check.log): HAProxy path skipped"; return 1; }
	start_peer haproxy-b "$RUN_DIR/haproxy-b.log" "$HAPROXY" -db -f "$cfg_b" || { note "haproxy-b did not start (see $RUN_DIR/haproxy-b.log)"; return 1; }
	pb=$PEER_PID
	start_peer haproxy-a "$RUN_DIR/haproxy-a.log" "$HAPROXY" -db -f "$cfg_a" || { note "haproxy-a did not start (see $RUN_DIR/haproxy-a.log)"; return 1; }
	pa=$PEER_PID
	HAPROXY_H2=127.0.0.1:$a_h2 HAPROXY_GRPC=127.0.0.1:$a_g
	HAPROXY_PIDS="$pa $pb"
	wait_http "http://127.0.0.1:$a_h1/whoami" backend-direct 10 || { note "no answer through HAProxy A → B (see $RUN_DIR/haproxy-*.log)"; return 1; }
	check_mtls haproxy "127.0.0.1:$b_h1" haproxy-a
	HAPROXY_CMD="haproxy -db -f haproxy-a.cfg / haproxy-b.cfg (nbthread $HAPROXY_NBTHREAD, configs in bench/out/$RUN_ID/certs/)"
	add_path haproxy "HAProxy ×2, mTLS" "127.0.0.1:$a_h1" "$pa $pb" \
		"\`$HAPROXY_CMD\`: A plaintext on loopback → TLS 1.3 with A's mesh SVID (verify required, ca-file = Trellis root) → B (verify required: client certificate checked against the Trellis root) → bench-backend; option http-keep-alive, http-reuse always, no logging; CPU and RSS per instance"
}
start_nginx() {
	local a b cfg_a cfg_b pa pb
	a=$("$BENCHTOOL" freeport) b=$("$BENCHTOOL" freeport)
	cfg_b=$(nginx_config nginx-b "$CERTS" "$a" "$b" "$DIRECT_ADDR" "$NGINX_WORKERS")
	cfg_a=$(nginx_config nginx-a "$CERTS" "$a" "$b" "$DIRECT_ADDR" "$NGINX_WORKERS")
	"$NGINX" -t -q -e "$CERTS/nginx-check.err" -c "$cfg_a" >"$RUN_DIR/nginx-check.log" 2>&1 && "$NGINX" -t -q -e "$CERTS/nginx-check.err" -c "$cfg_b" >>"$RUN_DIR/nginx-check.log" 2>&1 ||
		{ note "nginx rejected its config (see $RUN_DIR/nginx-check.log): nginx path skipped"; return 1; }
	start_peer nginx-b "$RUN_DIR/nginx-b.log" "$NGINX" -e "$CERTS/nginx-b.err" -c "$cfg_b" || { note "nginx-b did not start (see $RUN_DIR/nginx-b.log, $CERTS/nginx-b.err)"; return 1; }
	pb=$PEER_PID
	start_peer nginx-a "$RUN_DIR/nginx-a.log" "$NGINX" -e "$CERTS/nginx-a.err" -c "$cfg_a" || { note "nginx-a did not start (see $RUN_DIR/nginx-a.log, $CERTS/nginx-a.err)"; return 1; }
	pa=$PEER_PID
	for p in $(pgrep -P "$pa") $(pgrep -P "$pb"); do PIDS+=("$p"); done
	wait_http "http://127.0.0.1:$a/whoami" backend-direct 10 || { note "no answer through nginx A → B (see $CERTS/nginx-*.err)"; return 1; }
	check_mtls nginx "127.0.0.1:$b" nginx-a
	add_path nginx "nginx ×2, mTLS" "127.0.0.1:$a" "$pa $pb" \
		"\`nginx -c nginx-a.conf / nginx-b.conf\` ($NGINX_WORKERS workers each): A plaintext → TLS 1.3 with A's mesh SVID (proxy_ssl_certificate; proxy_ssl_verify off: nginx matches a DNS name or IP and SVIDs carry only a SPIFFE URI) → B (ssl_verify_client on against the Trellis root) → bench-backend; keepalive upstream pools on both hops, access_log off; CPU and RSS per instance (master + workers)"
}

# --- HTTP/1.1 rounds ------------------------------------------------------------
declare -A V # V[key]: the values file of a path
run_round() { # run_round ROUND
	local k pids d_p50 d_p99
	for k in "${PATHS[@]}"; do
		pids=${P_PIDS[$k]}
		# shellcheck disable=SC2086
		measure "$k-r$1" "${P_ADDR[$k]}" $pids
		echo "$R_P50 $R_P99 $R_P999 $R_MAX $R_VCPU" >>"$RUN_DIR/values-$k.txt"
		# shellcheck disable=SC2086
		P_HWM[$k]=$(rss_list VmHWM $pids)
		if [[ $k == direct ]]; then D_P50=$R_P50 D_P99=$R_P99; fi
		# shellcheck disable=SC2086
		row "${P_NAME[$k]} (round $1)" "$R_P50" "$R_P99" "$R_P999" \
			"$([[ $k == direct ]] || printf '%+d' $((R_P50 - D_P50)))" "$([[ $k == direct ]] || printf '%+d' $((R_P99 - D_P99)))" \
			"$R_QPS" "$R_ERRS / $R_MAX_ERRS" "$R_MAX" "$R_VCPU" "${P_IDLE[$k]}" "${P_HWM[$k]}"
	done
}

median() { # median FILE COLUMN FORMAT: the median of a column of numbers, printf-formatted
	awk -v c="$2" '{print $c}' "$1" | sort -g | awk -v f="$3" '{a[NR] = $1} END {
		printf f, (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# --- HTTP/2 and gRPC -------------------------------------------------------------
H2_ROWS=()
h2_row() { local IFS='|' s; s="$*"; H2_ROWS+=("| ${s//|/ | } |"); }
# h2 LABEL NAME URL PID...: h2load at max rate over h2c (prior knowledge);
# CPU of PIDs per 1k rps per process.
h2() {
	local label=$1 name=$2 url=$3 t0 t1 rps mean reqs fail bound
	shift 3
	bound=$(($(secs "$H2_DURATION") + 30))
	log "$label: h2load -c $CONNS -m 10 -t 2 -D $(secs "$H2_DURATION") $url"
	t0=$(cpu_ticks "$@")
	timeout "$bound" "$H2LOAD" -c "$CONNS" -m 10 -t 2 -D "$(secs "$H2_DURATION")" --warm-up-time=2 "$url" >"$RUN_DIR/$label.txt" 2>&1 ||
		{ note "$label: h2load failed (see $RUN_DIR/$label.txt)"; return 0; }
	t1=$(cpu_ticks "$@")
	rps=$(awk '/^finished in/ {gsub(",", ""); printf "%.0f", $4}' "$RUN_DIR/$label.txt")
	reqs=$(awk '/^requests:/ {print $8}' "$RUN_DIR/$label.txt")
	fail=$(awk '/^requests:/ {print $10 + $12 + $14}' "$RUN_DIR/$label.txt")
	# "time for request:  min max mean sd" with units us, ms or s; mean in µs
	mean=$(awk '/^time for request:/ { v = $6; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
		m = (u == "us") ? 1 : (u == "ms") ? 1000 : 1000000; printf "%.0f", v * m }' "$RUN_DIR/$label.txt")
	H2_RPS[$label]=$rps
	h2_row "$name" "HTTP/2 h2load, max rate" "$rps" "mean $mean" "${reqs:-?} / ${fail:-?}" \
		"$(if (($# > 0)); then per_1k $((t1 - t0)) "$(secs "$H2_DURATION")" "${rps:-0}" $#; fi)" "$(if (($# > 0)); then rss_list VmHWM "$@"; fi)"
	log "$label: $rps rps, mean $mean µs"
}
declare -A H2_RPS GRPC_P50 GRPC_P99 GRPC_MAX
# grpc LABEL NAME ADDR PID...: ghz EmptyCall at QPS for GRPC_DURATION (latency,
# CPU of PIDs), then unlimited (max rps).
grpc() {
	local label=$1 name=$2 addr=$3 t0 t1 bound line p50 p99 rps ok errs mrps vcpu
	shift 3
	bound=$(($(secs "$GRPC_DURATION") + 30))
	log "$label: ghz $QPS rps, then max rate, $GRPC_DURATION each"
	t0=$(cpu_ticks "$@")
	timeout "$bound" "$GHZ" --insecure --call grpc.testing.TestService.EmptyCall -d '{}' -c "$CONNS" -r "$QPS" \
		-z "$GRPC_DURATION" -O json -o "$RUN_DIR/$label-fixed.json" "$addr" >"$RUN_DIR/$label-fixed.txt" 2>&1 ||
		{ note "$label: ghz failed (see $RUN_DIR/$label-fixed.txt)"; return 0; }
	t1=$(cpu_ticks "$@")
	line=$("$BENCHTOOL" ghz "$RUN_DIR/$label-fixed.json") || { note "$label: no ghz result"; return 0; }
	read -r p50 p99 rps ok errs <<<"$line"
	vcpu=$(if (($# > 0)); then per_1k $((t1 - t0)) "$(secs "$GRPC_DURATION")" "$rps" $#; fi)
	timeout "$bound" "$GHZ" --insecure --call grpc.testing.TestService.EmptyCall -d '{}' -c "$CONNS" \
		-z "$GRPC_DURATION" -O json -o "$RUN_DIR/$label-max.json" "$addr" >"$RUN_DIR/$label-max.txt" 2>&1 ||
		{ note "$label: ghz max rate failed (see $RUN_DIR/$label-max.txt)"; return 0; }
	read -r _ _ mrps _ _ <<<"$("$BENCHTOOL" ghz "$RUN_DIR/$label-max.json")"
	GRPC_P50[$label]=$p50 GRPC_P99[$label]=$p99 GRPC_MAX[$label]=${mrps%.*}
	h2_row "$name" "gRPC ghz EmptyCall, $QPS rps / max" "${mrps%.*}" "p50 $p50, p99 $p99 (at $QPS rps)" "$ok / $errs (at $QPS rps)" "$vcpu" \
		"$(if (($# > 0)); then rss_list VmHWM "$@"; fi)"
	log "$label: p50 $p50 µs p99 $p99 µs at $rps rps; max $mrps rps"
}

# --- a sidecar configured with SERVICES services ---------------------------------
# Registers SERVICES-1 one-workload services through the API (nothing serves
# them) and runs one more `trellis proxy`, client100, whose upstreams are
# backend and all of them: SERVICES outbound listeners and clusters. Idle RSS,
# then the fixed-rate load through its backend port (to backend-v1's sidecar).
SVC_ROW= SVC_SMAPS_IDLE= SVC_SMAPS_LOAD= SVC_PEAK=
svc100() {
	local n=$((SERVICES - 1)) args=() ports i last tok admin inbound pid t0 t1 idle line sampler
	log "registering $n extra services through the API"
	"$BENCHTOOL" register "$MESH_CONTROL" svc "$n" >"$RUN_DIR/svc-register.log" 2>&1 ||
		{ note "registering $n services failed (see $RUN_DIR/svc-register.log): RSS with $SERVICES services not measured"; return 0; }
	# Ports below the ephemeral range: the load generators' outgoing
	# connections take ephemeral ports, and one bind failure makes the
	# sidecar reject (NACK) the whole listener set.
	mapfile -t ports < <("$BENCHTOOL" freeports $((SERVICES + 2)))
	((${#ports[@]} == SERVICES + 2)) || { note "no $((SERVICES + 2)) free ports: RSS with $SERVICES services not measured"; return 0; }
	admin=127.0.0.1:${ports[SERVICES]} inbound=127.0.0.1:${ports[SERVICES + 1]}
	SVC_BACKEND=127.0.0.1:${ports[0]}
	args+=(--upstream "backend=$SVC_BACKEND")
	for ((i = 1; i <= n; i++)); do
		last=127.0.0.1:${ports[i]}
		args+=(--upstream "$(printf 'svc-%03d' "$i")=$last")
	done
	tok=$("$BENCHTOOL" token "$MESH_CONTROL")
	SVC_CMD="TRELLIS_JOIN_TOKEN=… trellis proxy --control $MESH_CONTROL --name client100 --service client100 --app $DIRECT_ADDR --inbound $inbound --admin-addr $admin --upstream backend=… --upstream svc-001=… (… $SERVICES upstreams)"
	TRELLIS_JOIN_TOKEN=$tok "$TRELLIS" proxy --control "$MESH_CONTROL" --name client100 --service client100 \
		--app "$DIRECT_ADDR" --inbound "$inbound" --admin-addr "$admin" "${args[@]}" >"$RUN_DIR/client100.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	log "client100 sidecar (pid $pid) with $SERVICES upstreams"
	wait_http "http://$SVC_BACKEND/whoami" backend-v1 "$READY_TIMEOUT" && wait_port "$last" 20 ||
		{ note "client100 (sidecar with $SERVICES upstreams) did not come up (see $RUN_DIR/client100.log)"; return 0; }
	sleep 5
	# Once ready the sidecar releases its start-up memory (internal/memtrim,
	# 2 s after ready): idle is measured after that.
	for ((i = 0; i < 20; i++)); do
		grep -q 'released start-up memory' "$RUN_DIR/client100.log" && break
		sleep 0.5
	done
	grep -q 'released start-up memory' "$RUN_DIR/client100.log" ||
		note "client100 did not log 'released start-up memory' within 15 s: its idle RSS includes start-up's pages"
	idle=$(rss_mib VmRSS "$pid")
	SVC_SMAPS_IDLE=$(smaps_mib "$pid")
	log "client100: idle RSS $idle MiB; $QPS qps through it for $DURATION"
	t0=$(cpu_ticks "$pid")
	# VmRSS sampled every 0.25 s during the load: the peak under load (VmHWM
	# also counts start-up, before the release).
	(while kill -0 "$pid" 2>/dev/null; do rss_mib VmRSS "$pid" && echo; sleep 0.25; done) >"$RUN_DIR/svc100-rss.txt" &
	sampler=$!
	PIDS+=("$sampler")
	timeout $(($(secs "$DURATION") + 30)) "$FORTIO" load -qps "$QPS" -c "$CONNS" -t "$DURATION" -r 0.00001 -p "50,99,99.9" \
		-loglevel Warning -json "$RUN_DIR/svc100-fixed.json" "http://$SVC_BACKEND/" >"$RUN_DIR/svc100-fixed.txt" 2>&1 ||
		{ stop_pid "$sampler"; note "svc100: fortio failed (see $RUN_DIR/svc100-fixed.txt)"; return 0; }
	t1=$(cpu_ticks "$pid")
	stop_pid "$sampler"
	SVC_PEAK=$(sort -n "$RUN_DIR/svc100-rss.txt" | tail -1)
	line=$("$BENCHTOOL" fortio "$RUN_DIR/svc100-fixed.json")
	read -r R_P50 R_P99 _ R_QPS _ R_ERRS <<<"$line"
	SVC_IDLE=$idle SVC_LOAD=$(rss_mib VmRSS "$pid") SVC_HWM=$(rss_mib VmHWM "$pid")
	SVC_SMAPS_LOAD=$(smaps_mib "$pid")
	# Last: rendering the config dump leaves ~2 MiB of garbage in the heap
	# that the idle and load figures must not include.
	curl -s -m 5 "http://$admin/config_dump" >"$RUN_DIR/client100-config.json" 2>/dev/null || true
	SVC_ROW="| client100 sidecar, $SERVICES upstream services | $SVC_IDLE | $SVC_PEAK | $SVC_LOAD | $SVC_HWM | $R_P50 / $R_P99 at $R_QPS qps, $R_ERRS errors | $(per_1k $((t1 - t0)) "$(secs "$DURATION")" "$R_QPS" 1) |"
	stop_pid "$pid"
}

# --- the run ----------------------------------------------------------------------
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if [[ $MODE != cp ]]; then start_direct; fi
if [[ $MODE == both ]]; then
	start_trellis
	if [[ -n "$HAPROXY$NGINX" ]]; then
		"$BENCHTOOL" certs "$MESH_CONTROL" "$CERTS" haproxy-a haproxy-b nginx-a nginx-b >"$RUN_DIR/certs.txt" 2>&1 ||
			{ note "no certificates from the Trellis CA (see $RUN_DIR/certs.txt): peers skipped"; HAPROXY= NGINX=; }
	fi
	if [[ -n "$HAPROXY" ]]; then start_haproxy || HAPROXY=; fi
	if [[ -n "$NGINX" ]]; then start_nginx || NGINX=; fi
fi
if [[ $MODE != cp ]]; then
	for ((round = 1; round <= ROUNDS; round++)); do run_round "$round"; done
fi

if [[ $MODE == both ]]; then
	if [[ -n "$H2LOAD" ]]; then
		h2 h2-direct "direct" "http://$DIRECT_ADDR/" "$DIRECT_PID"
		if [[ -n "$HAPROXY" ]]; then
			# shellcheck disable=SC2086
			h2 h2-haproxy "HAProxy ×2, mTLS (h2 both hops)" "http://$HAPROXY_H2/" $HAPROXY_PIDS
		fi
	fi
	if [[ -n "$GHZ" ]]; then
		grpc grpc-direct "direct (grpc-echo)" "$GRPC_DIRECT_ADDR" "$GRPC_DIRECT_PID"
		if [[ -n "$HAPROXY" ]]; then
			# shellcheck disable=SC2086
			grpc grpc-haproxy "HAProxy ×2, mTLS (h2 both hops)" "$HAPROXY_GRPC" $HAPROXY_PIDS
		fi
	fi
	if ! skipped svc100; then svc100; fi
	stop_mesh
	if [[ -n "$H2LOAD$GHZ" ]]; then
		start_mesh bench/mesh-h2.yaml client-v1 backend-h2-v1 grpc-echo-v1
		H2_UP_CMD=$UP_CMD
		if [[ -n "$H2LOAD" ]]; then
			wait_http "http://${OUTBOUND[backend-h2-v1]}/whoami" backend-h2-v1 20 || note "whoami through the h2 mesh failed"
			h2 h2-trellis "Trellis ×2, mTLS (h2 both hops)" "http://${OUTBOUND[backend-h2-v1]}/" "${SIDECAR[client-v1]}" "${SIDECAR[backend-h2-v1]}"
		fi
		if [[ -n "$GHZ" ]]; then
			grpc grpc-trellis "Trellis ×2, mTLS" "${OUTBOUND[grpc-echo-v1]}" "${SIDECAR[client-v1]}" "${SIDECAR[grpc-echo-v1]}"
		fi
		stop_mesh
	fi
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
# Other work on the machine spoils tail latencies: say so in the report.
BUSY=$(awk -v l="${LOAD_BEFORE%% *}" -v n="$(nproc)" 'BEGIN { print (l > n / 2) ? 1 : 0 }')
# The control plane at scale loads the machine itself: last, after the
# load average that judges the data-plane runs was taken.
if [[ $MODE == cp ]] || { [[ $MODE == both ]] && ! skipped cp; }; then cp_scale; fi

# --- summary: medians over rounds, and ratios -------------------------------------
declare -A M # M[path,column]: medians
for k in "${PATHS[@]}"; do
	for c in 1 2 3 4 5; do
		fmt=%.0f
		if ((c == 5)); then fmt=%.3f; fi
		M[$k,$c]=$(median "$RUN_DIR/values-$k.txt" "$c" "$fmt")
	done
done
has() { [[ -n "${M[$1,1]:-}" ]]; }
added() { echo $((${M[$1,$2]} - ${M[direct,$2]})); } # added PATH COLUMN: µs over direct
# ratio A B: A/B as "1.23×", or "–" when B is not a positive number (an
# added latency at or below zero has no meaningful ratio).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a != "" && a != "?") printf "%.2f×", a / b; else print "–" }'; }
SUMMARY=()
for k in "${PATHS[@]}"; do
	if [[ $k == direct ]]; then
		SUMMARY+=("| direct | ${M[$k,1]} | ${M[$k,2]} | ${M[$k,3]} | | | ${M[$k,4]} | app ${M[$k,5]} | app: idle ${P_IDLE[$k]}, peak ${P_HWM[$k]} |")
	else
		SUMMARY+=("| ${P_NAME[$k]} | ${M[$k,1]} | ${M[$k,2]} | ${M[$k,3]} | $(printf '%+d' "$(added "$k" 1)") | $(printf '%+d' "$(added "$k" 2)") | ${M[$k,4]} | ${M[$k,5]} | idle ${P_IDLE[$k]}, peak ${P_HWM[$k]} |")
	fi
done
RATIOS=()
for peer in haproxy nginx; do
	has trellis && has "$peer" || continue
	RATIOS+=("| Trellis ÷ ${P_NAME[$peer]} | $(ratio "$(added trellis 1)" "$(added "$peer" 1)") | $(ratio "$(added trellis 2)" "$(added "$peer" 2)") | $(ratio "${M[trellis,5]}" "${M[$peer,5]}") | $(ratio "${M[trellis,4]}" "${M[$peer,4]}") | $(ratio "${H2_RPS[h2-trellis]:-}" "${H2_RPS[h2-$peer]:-}") | $(ratio "${GRPC_MAX[grpc-trellis]:-}" "${GRPC_MAX[grpc-$peer]:-}") |")
done
# verdict OK [TAIL]: met / not met; TAIL=tail marks a figure (p99, max rate)
# that a busy machine spoils.
verdict() {
	local v="**not met**"
	if [[ $1 == 1 ]]; then v="**met**"; fi
	if [[ ${2:-} == tail && $BUSY == 1 ]]; then v+=" (machine busy: not trustworthy)"; fi
	echo "$v"
}
TARGETS=()
if has trellis && has haproxy; then
	TARGETS+=("| added p50 at $QPS rps ≤ HAProxy ×2 | $(printf '%+d' "$(added trellis 1)") µs vs $(printf '%+d' "$(added haproxy 1)") µs | $(verdict "$(awk -v a="$(added trellis 1)" -v b="$(added haproxy 1)" 'BEGIN {print (a <= b)}')") |")
	TARGETS+=("| added p99 at $QPS rps ≤ HAProxy ×2 | $(printf '%+d' "$(added trellis 2)") µs vs $(printf '%+d' "$(added haproxy 2)") µs | $(verdict "$(awk -v a="$(added trellis 2)" -v b="$(added haproxy 2)" 'BEGIN {print (a <= b)}')" tail) |")
	TARGETS+=("| vCPU per 1k rps per sidecar ≤ 2× HAProxy's (and ≪ Istio's 0.20) | ${M[trellis,5]} vs ${M[haproxy,5]} ($(ratio "${M[trellis,5]}" "${M[haproxy,5]}")) | $(verdict "$(awk -v a="${M[trellis,5]}" -v b="${M[haproxy,5]}" 'BEGIN {print (a <= 2 * b && a < 0.2)}')") |")
	TARGETS+=("| max rps through two hops ≥ HAProxy ×2 | ${M[trellis,4]} vs ${M[haproxy,4]} ($(ratio "${M[trellis,4]}" "${M[haproxy,4]}")) | $(verdict "$(awk -v a="${M[trellis,4]}" -v b="${M[haproxy,4]}" 'BEGIN {print (a >= b)}')" tail) |")
fi
if [[ -n "${SVC_IDLE:-}" ]]; then
	TARGETS+=("| RSS per sidecar with $SERVICES services < 15 MB idle, < 25 MB under load | idle $SVC_IDLE MiB, under load $SVC_PEAK MiB at peak, $SVC_LOAD after (since start, with start-up: $SVC_HWM); of the idle RSS, anonymous $(cut -d'|' -f2 <<<"$SVC_SMAPS_IDLE" | tr -d ' ') MiB, file-backed (binary pages) $(cut -d'|' -f3 <<<"$SVC_SMAPS_IDLE" | tr -d ' ') MiB | $(verdict "$(awk -v a="$SVC_IDLE" -v b="$SVC_PEAK" 'BEGIN {print (a * 1.048576 < 15 && b * 1.048576 < 25)}')") |")
fi
if [[ -n "${H2_RPS[h2-trellis]:-}" && -n "${H2_RPS[h2-haproxy]:-}" ]]; then
	TARGETS+=("| HTTP/2 (h2load) max rps, reported | Trellis ${H2_RPS[h2-trellis]} vs HAProxy ${H2_RPS[h2-haproxy]} ($(ratio "${H2_RPS[h2-trellis]}" "${H2_RPS[h2-haproxy]}")) | reported |")
fi
TARGETS+=(${CP_TARGETS[@]+"${CP_TARGETS[@]}"})
if [[ -n "${GRPC_P50[grpc-trellis]:-}" && -n "${GRPC_P50[grpc-direct]:-}" ]]; then
	g="Trellis added p50 $(printf '%+d' $((${GRPC_P50[grpc-trellis]} - ${GRPC_P50[grpc-direct]}))) µs, p99 $(printf '%+d' $((${GRPC_P99[grpc-trellis]} - ${GRPC_P99[grpc-direct]}))) µs, max ${GRPC_MAX[grpc-trellis]} rps"
	if [[ -n "${GRPC_P50[grpc-haproxy]:-}" ]]; then
		g+="; HAProxy added p50 $(printf '%+d' $((${GRPC_P50[grpc-haproxy]} - ${GRPC_P50[grpc-direct]}))) µs, p99 $(printf '%+d' $((${GRPC_P99[grpc-haproxy]} - ${GRPC_P99[grpc-direct]}))) µs, max ${GRPC_MAX[grpc-haproxy]} rps (max rps $(ratio "${GRPC_MAX[grpc-trellis]}" "${GRPC_MAX[grpc-haproxy]}") of HAProxy's)"
	fi
	TARGETS+=("| gRPC (ghz EmptyCall), reported | $g; direct max ${GRPC_MAX[grpc-direct]} rps | reported |")
fi

# --- report -----------------------------------------------------------------
REPORT=$RUN_DIR/report.md
{
	echo
	case $MODE in
	both) title="direct vs Trellis vs HAProxy vs nginx (two hops, mTLS)$(skipped cp || printf ', and the control plane at scale')" ;;
	direct) title="direct only" ;;
	cp) title="control plane at scale only (ONLY=cp)" ;;
	esac
	echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — $title"
	echo
	echo "- machine: $(nproc) vCPU, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r), $(go version | awk '{print $3}')"
	echo "- tree: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$([[ -n "$(git --no-optional-locks status --porcelain 2>/dev/null | head -1)" ]] && echo ' with uncommitted changes')"
	if [[ $MODE != cp ]]; then
		echo "- tools: fortio $FORTIO_VER, wrk $WRK_VER, HAProxy $HAPROXY_VER (nbthread $HAPROXY_NBTHREAD), nginx $NGINX_VER ($NGINX_WORKERS workers), OpenSSL $OPENSSL_VER, h2load $H2LOAD_VER, ghz $GHZ_VER; $ROUNDS round(s), warm-up $WARMUP before each path"
		echo "- fixed rate: \`$FIXED_CMD\`; CPU = utime+stime from /proc/PID/stat over this run, per process, per 1,000 rps"
		echo "- max rate: \`$MAX_CMD\`"
		for k in "${PATHS[@]}"; do echo "- ${P_NAME[$k]}: ${P_WHAT[$k]}"; done
		echo "- RSS: idle = VmRSS after start and one request, before any load; peak = VmHWM after the HTTP/1.1 rounds"
	fi
	# (ONLY=cp: the control-plane section prints the load around its own run.)
	if [[ $MODE != cp ]]; then echo "- load average (1, 5, 15 min): $LOAD_BEFORE before, $LOAD_AFTER after"; fi
	if [[ $BUSY == 1 && $MODE == cp ]]; then
		echo "- **the machine was busy with other work when this run started: the control plane's latencies are inflated**"
	elif [[ $BUSY == 1 ]]; then
		echo "- **the machine was busy with other work when this run started: tail latencies (p99, p99.9) and max rps are not trustworthy**"
	fi
	for n in ${NOTES[@]+"${NOTES[@]}"}; do echo "- note: $n"; done
	echo "- raw output: bench/out/$RUN_ID/ (not committed)"
	if ((${#SUMMARY[@]} > 0)); then
		echo
		echo "HTTP/1.1, medians of $ROUNDS round(s) (µs; added = over direct):"
		echo
		echo "| path | p50 | p99 | p99.9 | added p50 | added p99 | max rps | vCPU per 1k rps per proxy | RSS MiB per proxy (A / B; peak of the last round) |"
		echo "|---|---|---|---|---|---|---|---|---|"
		printf '%s\n' "${SUMMARY[@]}"
	fi
	if ((${#RATIOS[@]} > 0)); then
		echo
		echo "Ratios (below 1× is better for Trellis, except throughput, where above 1× is):"
		echo
		echo "| ratio | added p50 | added p99 | vCPU per 1k rps per proxy | max rps (HTTP/1.1) | max rps (HTTP/2) | max rps (gRPC) |"
		echo "|---|---|---|---|---|---|---|"
		printf '%s\n' "${RATIOS[@]}"
	fi
	if ((${#TARGETS[@]} > 0)); then
		echo
		echo "Issue 3 targets:"
		echo
		echo "| target | this run | |"
		echo "|---|---|---|"
		printf '%s\n' "${TARGETS[@]}"
	fi
	if ((${#ROWS[@]} > 0)); then
		echo
		echo "Every HTTP/1.1 run (RSS per proxy: A / B, MiB):"
		echo
		echo "| path | p50 | p99 | p99.9 | added p50 | added p99 | achieved qps | errors fixed / max | max rps | vCPU per 1k rps per proxy | idle RSS | peak RSS |"
		echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
		printf '%s\n' "${ROWS[@]}"
	fi
	if ((${#H2_ROWS[@]} > 0)); then
		echo
		echo "HTTP/2 and gRPC (h2: \`h2load -c $CONNS -m 10 -t 2 -D $(secs "$H2_DURATION") --warm-up-time=2 http://ADDR/\`, h2c to the first hop;"
		echo "gRPC: \`ghz --insecure --call grpc.testing.TestService.EmptyCall -d '{}' -c $CONNS [-r $QPS] -z $GRPC_DURATION ADDR\` against the grpc-echo demo app, plaintext to the first hop;"
		echo "Trellis: \`${H2_UP_CMD:-trellis up -f bench/mesh-h2.yaml}\`, backends of protocol http2 and grpc; latency µs; CPU during the h2load run or the fixed-rate ghz run):"
		echo
		echo "| path | load | max rps | latency µs | requests ok / failed | vCPU per 1k rps per proxy | peak RSS MiB (VmHWM since start) |"
		echo "|---|---|---|---|---|---|---|"
		printf '%s\n' "${H2_ROWS[@]}"
	fi
	if [[ -n "$SVC_ROW" ]]; then
		echo
		echo "A sidecar configured with $SERVICES services ($((SERVICES - 1)) registered through the API by \`benchtool register\`, not served, plus backend): \`$SVC_CMD\`; load: the fixed-rate fortio run through its backend port:"
		echo
		echo "| sidecar | idle RSS MiB (VmRSS) | peak RSS under load MiB (VmRSS every 0.25 s) | RSS after load MiB (VmRSS) | peak RSS since start MiB (VmHWM, includes start-up) | p50 / p99 µs | vCPU per 1k rps |"
		echo "|---|---|---|---|---|---|---|"
		echo "$SVC_ROW"
		echo
		echo "Its memory from /proc/PID/smaps_rollup (MiB): file-backed pages are the \`trellis\` binary's, shared through the page cache with every trellis process on the host; PSS divides them among those processes; anonymous is the sidecar's own (heap, stacks, runtime):"
		echo
		echo "| when | RSS | anonymous | file-backed | PSS |"
		echo "|---|---|---|---|---|"
		echo "| idle | $SVC_SMAPS_IDLE |"
		echo "| after load | $SVC_SMAPS_LOAD |"
	fi
	if ((${#CP_REPORT[@]} > 0)); then
		echo
		printf '%s\n' "${CP_REPORT[@]}"
	fi
} >"$REPORT"
cat "$REPORT"
if [[ $WRITE_RESULTS == 1 ]]; then
	[[ -f bench/RESULTS.md ]] || printf '# Benchmark results\n\nAppended by bench/run.sh; see bench/README.md for what is measured and how.\n' >bench/RESULTS.md
	cat "$REPORT" >>bench/RESULTS.md
	log "appended to bench/RESULTS.md"
fi
