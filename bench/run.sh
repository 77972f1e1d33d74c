#!/usr/bin/env bash
# bench/run.sh — the same HTTP/1.1 load on loopback against (a) the bench
# backend directly and (b) the same app through two Trellis sidecars with
# mutual TLS, in one run; appends a dated section to bench/RESULTS.md.
#
#   bench/run.sh                 # both paths (needs `trellis up` and `trellis status -o json`)
#   bench/run.sh --direct-only   # only (a): checks the harness without the mesh
#   bench/run.sh --no-results    # do not touch bench/RESULTS.md
#
# Settings (environment): QPS=1000 CONNS=16 DURATION=15s MAX_CONNS=32
# MAX_DURATION=10s WARMUP=2s ROUNDS=1 READY_TIMEOUT=60 FORTIO_VERSION=v1.68.2,
# TRELLIS_BIN (a trellis binary to use instead of building ./cmd/trellis).
# Every process it starts is stopped by PID on exit. Raw output: bench/out/<run>/.
set -euo pipefail

MODE=both
WRITE_RESULTS=1
while [[ $# -gt 0 ]]; do
	case "$1" in
	--direct-only) MODE=direct ;;
	--no-results) WRITE_RESULTS=0 ;;
	-h | --help)
		sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
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
# fortio@latest (1.69+) needs grol.io/grol, which the module proxy here refuses;
# 1.68.2 is the last release without it. FORTIO_VERSION=latest to override.
FORTIO_VERSION=${FORTIO_VERSION:-v1.68.2}
for d in "$DURATION" "$MAX_DURATION" "$WARMUP"; do
	[[ "$d" =~ ^[0-9]+s$ ]] || { echo "run.sh: durations are whole seconds like 15s, got $d" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=bench/out
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
RUN_DIR=$OUT/$RUN_ID
mkdir -p "$RUN_DIR"
BENCHTOOL=$OUT/benchtool
# TRELLIS_BIN: use that trellis binary instead of building ./cmd/trellis.
TRELLIS=${TRELLIS_BIN:-$OUT/trellis}
CLIENT=client-v1
BACKEND=backend-v1

log() { printf '%s run.sh: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
secs() { echo "${1%s}"; }

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
	local pid
	for pid in ${PIDS[@]+"${PIDS[@]}"}; do stop_pid "$pid"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools ----------------------------------------------------------------
command -v go >/dev/null || die "go is not on PATH"
GOBIN_DIR=$(go env GOPATH)/bin
FORTIO=$(command -v fortio || true)
if [[ -z "$FORTIO" && -x "$GOBIN_DIR/fortio" ]]; then FORTIO=$GOBIN_DIR/fortio; fi
if [[ -z "$FORTIO" ]]; then
	log "installing fortio $FORTIO_VERSION (go install)"
	(cd /tmp && GOFLAGS= go install "fortio.org/fortio@$FORTIO_VERSION") || die "go install fortio failed"
	FORTIO=$GOBIN_DIR/fortio
fi
WRK=$(command -v wrk || true)
if [[ -z "$WRK" && $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
	log "installing wrk (apt-get)"
	{ apt-get install -y -qq wrk || { apt-get update -qq && apt-get install -y -qq wrk; }; } >"$RUN_DIR/apt.log" 2>&1 ||
		log "apt-get install wrk failed (see $RUN_DIR/apt.log); max rate will use fortio -qps 0"
	WRK=$(command -v wrk || true)
fi

log "building benchtool$(if [[ $MODE == both && -z "${TRELLIS_BIN:-}" ]]; then echo ' and trellis'; fi)"
go build -o "$BENCHTOOL" ./bench/benchtool
if [[ $MODE == both && -z "${TRELLIS_BIN:-}" ]]; then go build -o "$TRELLIS" ./cmd/trellis; fi

FORTIO_VER=$("$FORTIO" version 2>/dev/null | head -1)
WRK_VER=none
if [[ -n "$WRK" ]]; then WRK_VER=$("$WRK" -v 2>&1 | head -1 | awk '{print $2}' || true); fi
CLK_TCK=$(getconf CLK_TCK)

# --- measurement helpers ----------------------------------------------------
cpu_ticks() { # cpu_ticks PID...: utime+stime of the processes, in clock ticks
	local pid stat rest total=0
	for pid in "$@"; do
		stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
		rest=${stat##*) }
		read -r -a f <<<"$rest"
		total=$((total + f[11] + f[12]))
	done
	echo "$total"
}
peak_rss_mib() { # peak_rss_mib PID: VmHWM in MiB
	awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo "?"
}
wait_http() { # wait_http URL WORKLOAD SECONDS
	local deadline=$((SECONDS + $3))
	until "$BENCHTOOL" whoami "$1" "$2" >/dev/null 2>&1; do
		((SECONDS < deadline)) || { "$BENCHTOOL" whoami "$1" "$2" || true; return 1; }
		sleep 0.2
	done
}

FIXED_CMD="fortio load -qps $QPS -c $CONNS -t $DURATION -r 0.00001 -p \"50,99,99.9\" -json FILE http://ADDR/"
if [[ -n "$WRK" ]]; then
	MAX_CMD="wrk -t2 -c$MAX_CONNS -d$MAX_DURATION --latency http://ADDR/"
else
	MAX_CMD="fortio load -qps 0 -c $MAX_CONNS -t $MAX_DURATION -json FILE http://ADDR/"
fi

# measure LABEL ADDR PID...: warm-up, fixed rate, max rate against http://ADDR/;
# the CPU of PIDs is sampled around the fixed-rate run. Sets R_* variables.
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
	R_VCPU=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v s="$(secs "$DURATION")" -v q="$R_QPS" \
		'BEGIN { if (q > 0) printf "%.3f", d / hz / s / (q / 1000); else print "?" }')
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
	log "$label: p50 ${R_P50}µs p99 ${R_P99}µs p99.9 ${R_P999}µs at ${R_QPS} qps ($R_ERRS errors); max ${R_MAX} rps; ${R_VCPU} vCPU per 1k rps"
}

ROWS=()
row() { # row CELL...: one Markdown table row
	local IFS='|' s
	s="$*"
	ROWS+=("| ${s//|/ | } |")
}

# --- (a) direct ---------------------------------------------------------------
start_direct() {
	DIRECT_ADDR=127.0.0.1:$("$BENCHTOOL" freeport)
	TRELLIS_APP_ADDR=$DIRECT_ADDR TRELLIS_WORKLOAD=backend-direct TRELLIS_SERVICE=backend \
		"$BENCHTOOL" demo-app bench-backend >"$RUN_DIR/direct-app.log" 2>&1 &
	DIRECT_PID=$!
	PIDS+=("$DIRECT_PID")
	wait_http "http://$DIRECT_ADDR/whoami" backend-direct 10 || die "bench-backend did not come up (see $RUN_DIR/direct-app.log)"
}
run_direct() { # run_direct ROUND
	start_direct
	measure "direct-r$1" "$DIRECT_ADDR" "$DIRECT_PID"
	D_P50=$R_P50 D_P99=$R_P99 D_P999=$R_P999 D_MAX=$R_MAX
	echo "$R_P50 $R_P99 $R_P999 $R_MAX $R_VCPU" >>"$RUN_DIR/values-direct.txt"
	row "direct (round $1)" "$R_P50" "$R_P99" "$R_P999" "$R_QPS" "$R_ERRS / $R_MAX_ERRS" "$R_MAX" "app $R_VCPU" "app $(peak_rss_mib "$DIRECT_PID")"
	stop_pid "$DIRECT_PID"
}

# --- (b) two sidecars with mTLS ---------------------------------------------
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
start_mesh() {
	local p1 p2 deadline help
	p1=$("$BENCHTOOL" freeport)
	p2=$("$BENCHTOOL" freeport)
	CONTROL=http://127.0.0.1:$p1
	# The admin API flag of `trellis up` is --admin-addr (--control-addr in early plans).
	local admin_flag=--admin-addr
	help=$(timeout 10 "$TRELLIS" up --help 2>&1 || true)
	if [[ $help == *--control-addr* ]]; then admin_flag=--control-addr; fi
	UP_CMD="trellis up -f bench/mesh.yaml $admin_flag 127.0.0.1:$p1 --xds-addr 127.0.0.1:$p2"
	"$TRELLIS" up -f bench/mesh.yaml "$admin_flag" "127.0.0.1:$p1" --xds-addr "127.0.0.1:$p2" >"$RUN_DIR/up.log" 2>&1 &
	UP_PID=$!
	PIDS+=("$UP_PID")
	log "$UP_CMD (pid $UP_PID)"
	deadline=$((SECONDS + READY_TIMEOUT))
	READY=false
	while [[ $READY != true ]]; do
		kill -0 "$UP_PID" 2>/dev/null || { tail -20 "$RUN_DIR/up.log" >&2; die "trellis up exited (see $RUN_DIR/up.log)"; }
		((SECONDS < deadline)) || { tail -20 "$RUN_DIR/up.log" >&2; die "mesh not ready after ${READY_TIMEOUT}s (see $RUN_DIR/status.json)"; }
		sleep 0.5
		"$TRELLIS" status -o json --control "$CONTROL" >"$RUN_DIR/status.json" 2>"$RUN_DIR/status.err" || continue
		eval "$("$BENCHTOOL" status "$RUN_DIR/status.json" "$CLIENT" "$BACKEND")"
	done
	log "mesh ready: $CLIENT outbound $CLIENT_OUTBOUND → $BACKEND inbound $BACKEND_INBOUND → app $BACKEND_APP"
	SIDECAR_PIDS=()
	local w pid p
	for w in "$CLIENT" "$BACKEND"; do
		# Only descendants of our trellis up: another mesh on this machine may
		# have workloads of the same names.
		pid=
		for p in $(pgrep -f "trellis proxy.*--name[= ]$w( |$)" || true); do
			if descends_from "$p" "$UP_PID"; then pid=$p && break; fi
		done
		[[ -n "$pid" ]] || die "no sidecar process of trellis up (pid $UP_PID) found for $w (pgrep -f 'trellis proxy.*--name $w')"
		SIDECAR_PIDS+=("$pid")
		PIDS+=("$pid") # stopped by trellis up normally; this only catches strays
	done
	log "sidecar pids: $CLIENT ${SIDECAR_PIDS[0]}, $BACKEND ${SIDECAR_PIDS[1]}"
	# Apps and sidecars are trellis up's children: record them so that none
	# outlives the run even if trellis up has to be killed.
	for pid in $(pgrep -P "$UP_PID" || true); do PIDS+=("$pid"); done
	wait_http "http://$CLIENT_OUTBOUND/whoami" "$BACKEND" 20 || die "request through the sidecars did not reach $BACKEND"
	"$BENCHTOOL" whoami "http://$CLIENT_OUTBOUND/whoami" "$BACKEND" | tee "$RUN_DIR/mesh-whoami.txt" >&2
	grep -q 'spiffe://' "$RUN_DIR/mesh-whoami.txt" || log "warning: the app saw no SPIFFE x-forwarded-client-cert: is mTLS on?"
}
run_mesh() { # run_mesh ROUND
	measure "mesh-r$1" "$CLIENT_OUTBOUND" "${SIDECAR_PIDS[@]}"
	row "two sidecars, mTLS (round $1)" "$R_P50" "$R_P99" "$R_P999" "$R_QPS" "$R_ERRS / $R_MAX_ERRS" "$R_MAX" \
		"sidecars $R_VCPU" "$CLIENT $(peak_rss_mib "${SIDECAR_PIDS[0]}"), $BACKEND $(peak_rss_mib "${SIDECAR_PIDS[1]}")"
	echo "$R_P50 $R_P99 $R_P999 $R_MAX $R_VCPU" >>"$RUN_DIR/values-mesh.txt"
	local pct="?"
	if [[ "${D_MAX:-0}" -gt 0 ]]; then pct=$(awk -v a="$D_MAX" -v b="$R_MAX" 'BEGIN { printf "%+.0f%%", (b - a) * 100 / a }'); fi
	row "**added by the mesh** (round $1)" "$(printf '%+d' $((R_P50 - D_P50)))" "$(printf '%+d' $((R_P99 - D_P99)))" \
		"$(printf '%+d' $((R_P999 - D_P999)))" "" "" "$pct" "" ""
}
stop_mesh() {
	log "stopping trellis up (SIGINT)"
	stop_pid "$UP_PID" INT
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if [[ $MODE == both ]]; then start_mesh; fi
for ((round = 1; round <= ROUNDS; round++)); do
	run_direct "$round"
	if [[ $MODE == both ]]; then run_mesh "$round"; fi
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

median() { # median FILE COLUMN FORMAT: the median of a column of numbers, printf-formatted
	awk -v c="$2" '{print $c}' "$1" | sort -g | awk -v f="$3" '{a[NR] = $1} END {
		printf f, (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
if ((ROUNDS > 1)); then
	declare -A MD MM
	for c in 1 2 3 4 5; do
		fmt=%.0f
		if ((c == 5)); then fmt=%.3f; fi
		MD[$c]=$(median "$RUN_DIR/values-direct.txt" "$c" "$fmt")
		if [[ $MODE == both ]]; then MM[$c]=$(median "$RUN_DIR/values-mesh.txt" "$c" "$fmt"); fi
	done
	row "direct, median of $ROUNDS" "${MD[1]}" "${MD[2]}" "${MD[3]}" "" "" "${MD[4]}" "app ${MD[5]}" ""
	if [[ $MODE == both ]]; then
		row "two sidecars, mTLS, median of $ROUNDS" "${MM[1]}" "${MM[2]}" "${MM[3]}" "" "" "${MM[4]}" "sidecars ${MM[5]}" ""
		row "**added by the mesh, medians**" "$(printf '%+d' $((MM[1] - MD[1])))" "$(printf '%+d' $((MM[2] - MD[2])))" \
			"$(printf '%+d' $((MM[3] - MD[3])))" "" "" "$(awk -v a="${MD[4]}" -v b="${MM[4]}" 'BEGIN { printf "%+.0f%%", (b - a) * 100 / a }')" "" ""
	fi
fi
if [[ $MODE == both ]]; then stop_mesh; fi
# Other work on the machine spoils tail latencies: say so in the report.
BUSY=$(awk -v l="${LOAD_BEFORE%% *}" -v n="$(nproc)" 'BEGIN { print (l > n / 2) ? 1 : 0 }')

# --- report -----------------------------------------------------------------
REPORT=$RUN_DIR/report.md
{
	echo
	echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — $([[ $MODE == both ]] && echo 'direct vs two sidecars (mTLS)' || echo 'direct only (two-sidecar path not measured)')"
	echo
	echo "- machine: $(nproc) vCPU, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r), $(go version | awk '{print $3}')"
	echo "- tree: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$([[ -n "$(git --no-optional-locks status --porcelain 2>/dev/null | head -1)" ]] && echo ' with uncommitted changes')"
	echo "- load generators: fortio $FORTIO_VER (fixed rate, 10 µs histogram resolution), $([[ -n "$WRK" ]] && echo "wrk $WRK_VER (max rate)" || echo 'fortio -qps 0 (max rate; wrk not available)'); warm-up $WARMUP before each path; $ROUNDS round(s)"
	echo "- fixed rate: \`$FIXED_CMD\`"
	echo "- max rate: \`$MAX_CMD\`"
	echo "- direct: bench-backend alone on 127.0.0.1 (\`benchtool demo-app bench-backend\`)"
	if [[ $MODE == both ]]; then echo "- two sidecars: \`$UP_CMD\`; load to $CLIENT's outbound port for backend → $CLIENT sidecar → mTLS 1.3 → $BACKEND sidecar → bench-backend"; fi
	echo "- load average (1, 5, 15 min): $LOAD_BEFORE before, $LOAD_AFTER after"
	if [[ $BUSY == 1 ]]; then echo "- **the machine was busy with other work when this run started: tail latencies (p99, p99.9) and max rps are not trustworthy**"; fi
	echo "- raw output: bench/out/$RUN_ID/ (not committed)"
	echo
	echo "| path | p50 µs | p99 µs | p99.9 µs | achieved qps | errors fixed / max | max rps | vCPU per 1k rps | peak RSS MiB (VmHWM) |"
	echo "|---|---|---|---|---|---|---|---|---|"
	printf '%s\n' "${ROWS[@]}"
} >"$REPORT"
cat "$REPORT"
if [[ $WRITE_RESULTS == 1 ]]; then
	[[ -f bench/RESULTS.md ]] || printf '# Benchmark results\n\nAppended by bench/run.sh; see bench/README.md for what is measured and how.\n' >bench/RESULTS.md
	cat "$REPORT" >>bench/RESULTS.md
	log "appended to bench/RESULTS.md"
fi
