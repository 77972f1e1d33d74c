#!/usr/bin/env bash
# bench/pgo.sh — regenerate cmd/trellis/default.pgo, the CPU profile that Go's
# profile-guided optimisation (go build -pgo=auto, the default) builds the
# trellis binary with. It profiles the sidecars, the hot code, under the
# loads bench/run.sh measures, and merges the profiles:
#
#   HTTP/1.1: wrk -t2 -c32 through client-v1 → backend-v1 (bench/mesh.yaml)
#   HTTP/2:   h2load -c16 -m10 through client-v1 → backend-h2-v1 (bench/mesh-h2.yaml)
#   gRPC:     ghz EmptyCall -c16 through client-v1 → grpc-echo-v1 (bench/mesh-h2.yaml)
#
# Each load runs LOAD_SECONDS (default 12) while both sidecars on its path are
# profiled for PROFILE_SECONDS (default 10) from their admin ports
# (/debug/pprof/profile). The binary profiled is built with -pgo=off, so the
# profile describes code without PGO's inlining. Run it after changing the
# request path, then rebuild and compare with bench/run.sh. Needs wrk,
# h2load and ghz (bench/run.sh installs them). About a minute.
#
#   bench/pgo.sh            # writes cmd/trellis/default.pgo
#   bench/pgo.sh --dry-run  # profiles into bench/out/pgo-<run>/ only
set -euo pipefail

DRY=0
case "${1:-}" in
"") ;;
--dry-run) DRY=1 ;;
-h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
*) echo "pgo.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
esac
LOAD_SECONDS=${LOAD_SECONDS:-12}
PROFILE_SECONDS=${PROFILE_SECONDS:-10}
((PROFILE_SECONDS + 1 < LOAD_SECONDS)) || { echo "pgo.sh: PROFILE_SECONDS must be at least 2 below LOAD_SECONDS" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUN_DIR=bench/out/pgo-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN_DIR"
log() { printf '%s pgo.sh: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

PIDS=()
cleanup() {
	local i pid
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		pid=${PIDS[i]}
		kill -0 "$pid" 2>/dev/null || continue
		kill -INT "$pid" 2>/dev/null || true
		for _ in $(seq 1 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

WRK=$(command -v wrk || true)
H2LOAD=$(command -v h2load || true)
GHZ=$(command -v ghz || true)
[[ -n "$GHZ" || ! -x "$(go env GOPATH)/bin/ghz" ]] || GHZ=$(go env GOPATH)/bin/ghz
[[ -n "$WRK" && -n "$H2LOAD" && -n "$GHZ" ]] || die "needs wrk, h2load and ghz (bench/run.sh installs them)"

TRELLIS=$RUN_DIR/trellis
BENCHTOOL=$RUN_DIR/benchtool
log "building trellis (-pgo=off) and benchtool"
CGO_ENABLED=0 go build -pgo=off -o "$TRELLIS" ./cmd/trellis
go build -o "$BENCHTOOL" ./bench/benchtool

# up FILE CLIENT BACKEND: start `trellis up`, wait until CLIENT reaches
# BACKEND; sets UP_PID, OUT (client's outbound port for BACKEND), ADMINS.
up() {
	local file=$1 client=$2 backend=$3 p1 p2 deadline
	p1=$("$BENCHTOOL" freeport)
	p2=$("$BENCHTOOL" freeport)
	"$TRELLIS" up -f "$file" --admin-addr "127.0.0.1:$p1" --xds-addr "127.0.0.1:$p2" >"$RUN_DIR/up-$(basename "$file" .yaml).log" 2>&1 &
	UP_PID=$!
	PIDS+=("$UP_PID")
	CONTROL=http://127.0.0.1:$p1
	log "trellis up -f $file (pid $UP_PID)"
	deadline=$((SECONDS + 60))
	READY=false
	while [[ $READY != true ]]; do
		kill -0 "$UP_PID" 2>/dev/null || die "trellis up exited (see $RUN_DIR)"
		((SECONDS < deadline)) || die "$file: $client → $backend not ready after 60 s"
		if "$TRELLIS" status -o json --control "$CONTROL" >"$RUN_DIR/status.json" 2>/dev/null; then
			eval "$("$BENCHTOOL" status "$RUN_DIR/status.json" "$client" "$backend")"
		fi
		[[ $READY == true ]] || sleep 0.5
	done
	OUT=$CLIENT_OUTBOUND ADMINS=("$CLIENT_ADMIN" "$BACKEND_ADMIN")
}
down() {
	kill -INT "$UP_PID" 2>/dev/null || true
	for _ in $(seq 1 75); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 0.2; done
	kill -KILL "$UP_PID" 2>/dev/null || true
	wait "$UP_PID" 2>/dev/null || true
}

# profile NAME CMD...: run CMD (bounded by LOAD_SECONDS + 20 s) while both
# sidecars in ADMINS are profiled; profiles land in RUN_DIR/NAME-*.pprof.
PROFILES=()
profile() {
	local name=$1 i=0 a pids=()
	shift
	timeout $((LOAD_SECONDS + 20)) "$@" >"$RUN_DIR/$name-load.txt" 2>&1 &
	local load=$!
	sleep 1
	for a in "${ADMINS[@]}"; do
		i=$((i + 1))
		curl -sf -m $((PROFILE_SECONDS + 10)) -o "$RUN_DIR/$name-$i.pprof" "http://$a/debug/pprof/profile?seconds=$PROFILE_SECONDS" &
		pids+=($!)
	done
	for a in "${pids[@]}"; do wait "$a" || die "$name: profile from a sidecar failed"; done
	wait "$load" || die "$name: load failed (see $RUN_DIR/$name-load.txt)"
	for ((a = 1; a <= i; a++)); do PROFILES+=("$RUN_DIR/$name-$a.pprof"); done
	log "$name: profiled $i sidecars ($(tail -3 "$RUN_DIR/$name-load.txt" | tr '\n' ' ' | cut -c1-120))"
}

up bench/mesh.yaml client-v1 backend-v1
profile h1 "$WRK" -t2 -c32 -d"${LOAD_SECONDS}s" "http://$OUT/"
down
up bench/mesh-h2.yaml client-v1 backend-h2-v1
profile h2 "$H2LOAD" -c16 -m10 -t2 -D "$LOAD_SECONDS" "http://$OUT/"
eval "$("$BENCHTOOL" status "$RUN_DIR/status.json" client-v1 grpc-echo-v1)"
OUT=$CLIENT_OUTBOUND ADMINS=("$CLIENT_ADMIN" "$BACKEND_ADMIN")
profile grpc "$GHZ" --insecure --call grpc.testing.TestService.EmptyCall -d '{}' -c 16 -z "${LOAD_SECONDS}s" "$OUT"
down

go tool pprof -proto "${PROFILES[@]}" >"$RUN_DIR/merged.pprof" 2>"$RUN_DIR/merge.log" || die "merging profiles failed (see $RUN_DIR/merge.log)"
go tool pprof -top -nodecount=25 "$RUN_DIR/merged.pprof" >"$RUN_DIR/merged-top.txt" 2>/dev/null || true
if ((DRY)); then
	log "profile in $RUN_DIR/merged.pprof (dry run: cmd/trellis/default.pgo unchanged)"
else
	cp "$RUN_DIR/merged.pprof" cmd/trellis/default.pgo
	log "wrote cmd/trellis/default.pgo ($(wc -c <cmd/trellis/default.pgo) bytes) from ${#PROFILES[@]} profiles"
fi
