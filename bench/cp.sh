# bench/cp.sh — the control-plane part of bench/run.sh (sourced by it): the
# scale benchmark of issue 3 and the size of one proxy's config as the mesh
# grows. Sets CP_* figures, CP_TARGETS (rows for the targets table) and
# CP_REPORT (the report's section). Needs log, note, RUN_DIR, BENCHTOOL,
# TRELLIS from run.sh.
#
# Settings: CP_TIMEOUT=10m (go test -timeout), CP_FLAGS (extra flags for the
# benchmark, e.g. "-cpscale.services 300 -cpscale.proxies 300" for a quick
# look: the verdicts then say the run was not at the issue's scale),
# CP_CONFIG_SIZES="100 1000" (mesh sizes, in services, for the config size).

CP_TIMEOUT=${CP_TIMEOUT:-10m}
CP_FLAGS=${CP_FLAGS:-}
CP_CONFIG_SIZES=${CP_CONFIG_SIZES:-100 1000}
CP_TARGETS=()
CP_REPORT=()

# cp_verdict OK [SCALED]: met / not met, or "not measured at the issue's
# scale" unless SCALED is 1 (default: the scale benchmark's CP_AT_SCALE).
cp_verdict() {
	if [[ ${2:-$CP_AT_SCALE} != 1 ]]; then
		echo "not measured at the issue's scale ($CP_SERVICES services, $CP_PROXIES proxies)"
	elif [[ $1 == 1 ]]; then
		echo "**met**"
	else
		echo "**not met**"
	fi
}
cp_scale() {
	local out=$RUN_DIR/cp-scale.txt bound load_before
	# shellcheck disable=SC2206
	local extra=($CP_FLAGS)
	CP_CMD="go test -run '^\$' -bench ControlPlaneScale -benchtime 1x -timeout $CP_TIMEOUT ./internal/controlplane/ -cpscale.process${CP_FLAGS:+ $CP_FLAGS}"
	load_before=$(cut -d' ' -f1-3 /proc/loadavg)
	log "control plane at scale: $CP_CMD"
	# go test enforces -timeout itself; timeout(1) is the backstop.
	bound=$(($(awk -v t="$CP_TIMEOUT" 'BEGIN { n = t + 0; if (t ~ /m$/) n *= 60; if (t ~ /h$/) n *= 3600; print int(n) }') + 60))
	if ! timeout "$bound" go test -run '^$' -bench ControlPlaneScale -benchtime 1x -timeout "$CP_TIMEOUT" \
		./internal/controlplane/ -cpscale.process "${extra[@]}" >"$out" 2>&1; then
		note "control-plane scale benchmark failed (see $out)"
	fi
	if ! "$BENCHTOOL" cpscale "$out" >"$RUN_DIR/cp-scale.env" 2>"$RUN_DIR/cp-scale.err"; then
		note "no control-plane scale figures: $(cat "$RUN_DIR/cp-scale.err") (see $out)"
		CP_SERVICES=
	else
		# shellcheck disable=SC1091
		source "$RUN_DIR/cp-scale.env"
	fi

	log "config size of one proxy in meshes of $CP_CONFIG_SIZES services"
	# shellcheck disable=SC2086
	if "$BENCHTOOL" configsize "$TRELLIS" "$ROOT/$RUN_DIR/configsize" $CP_CONFIG_SIZES >"$RUN_DIR/configsize.txt" 2>&1; then
		CP_SIZE_ROWS=$(grep '^|' "$RUN_DIR/configsize.txt")
		CP_SIZE_VERDICT=$(sed -n 's/^VERDICT //p' "$RUN_DIR/configsize.txt")
	else
		note "config size not measured (see $RUN_DIR/configsize.txt)"
		CP_SIZE_ROWS= CP_SIZE_VERDICT=
	fi
	CP_LOAD="$load_before before, $(cut -d' ' -f1-3 /proc/loadavg) after"
	cp_results
}

# cp_results fills CP_TARGETS and CP_REPORT from the CP_* figures.
cp_results() {
	local ok
	CP_AT_SCALE=0
	if [[ -n "${CP_SERVICES:-}" ]]; then
		if ((CP_SERVICES >= 1000 && CP_PROXIES >= 1000 && CP_ENDPOINTS >= 10000)); then CP_AT_SCALE=1; fi
		ok=$(awk -v f="$CP_FLIP_P99_MS" -v r="$CP_REG_P99_MS" -v n="$CP_FLIP_NEVER$CP_REG_NEVER" \
			'BEGIN { print (f != "" && r != "" && f < 1000 && r < 1000 && n == "00") ? 1 : 0 }')
		CP_TARGETS+=("| one endpoint change reaches every affected proxy in < 1 s (p99), $CP_PROXIES proxies, $CP_SERVICES services, $CP_ENDPOINTS endpoints | health flip p99 $CP_FLIP_P99_MS ms (p50 $CP_FLIP_P50_MS), workload registering p99 $CP_REG_P99_MS ms; never arrived: ${CP_FLIP_NEVER:-?} + ${CP_REG_NEVER:-?} | $(cp_verdict "$ok") |")
		ok=$(awk -v v="$CP_VS_P99_MS" -v n="$CP_VS_NEVER" 'BEGIN { print (v != "" && v < 2000 && n == "0") ? 1 : 0 }')
		CP_TARGETS+=("| a full config change reaches every proxy in < 2 s (p99) | VirtualService edit on the hub, $CP_VS_PUSHED proxies pushed per round: p99 $CP_VS_P99_MS ms (p50 $CP_VS_P50_MS); never arrived: ${CP_VS_NEVER:-?} | $(cp_verdict "$ok") |")
		ok=$(awk -v p="${CP_PEAK_MB:-}" 'BEGIN { print (p != "" && p * 1.048576 < 300) ? 1 : 0 }')
		CP_TARGETS+=("| control-plane RSS < 300 MB | \`trellis control\` VmRSS ${CP_RSS_MB:-?} MiB, peak (VmHWM) ${CP_PEAK_MB:-?} MiB | $(cp_verdict "$ok") |")
		ok=$(awk -v p="$CP_FLIP_PUSHED" -v a="$CP_FLIP_AFFECTED" 'BEGIN { print (p != "" && a != "" && p + 0 <= a + 0) ? 1 : 0 }')
		CP_TARGETS+=("| pushes incremental: a change reaches only the proxies it affects | health flip: $CP_FLIP_PUSHED proxies pushed per round, $CP_FLIP_AFFECTED call the service | $(cp_verdict "$ok") |")
		CP_TARGETS+=("| initial sync of $CP_PROXIES proxies (control plane start, full compile, all connected and synced) | $CP_SYNC_MS ms | reported |")
	fi
	if [[ -n "${CP_SIZE_VERDICT:-}" ]]; then
		ok=0
		if [[ $CP_SIZE_VERDICT == met:* ]]; then ok=1; fi
		# The config-size meshes are built at the sizes asked for: no reduced scale.
		CP_TARGETS+=("| a sidecar's config follows what it calls, not the mesh size | ${CP_SIZE_VERDICT#*: } | $(cp_verdict "$ok" 1) |")
	fi
	CP_REPORT+=("Control plane at scale: \`$CP_CMD\` (internal/controlplane/scale_test.go: \`trellis control\` as its own process, real ADS clients in the test process; every workload calls a hub service and three others); load average $CP_LOAD; raw output bench/out/$RUN_ID/cp-scale.txt:")
	CP_REPORT+=("")
	if [[ -n "${CP_SERVICES:-}" ]]; then
		CP_REPORT+=("| change | rounds | p50 ms | p99 ms | max ms | proxies pushed per round | never arrived |")
		CP_REPORT+=("|---|---|---|---|---|---|---|")
		CP_REPORT+=("| one endpoint's health flips ($CP_FLIP_AFFECTED proxies call its service) | $CP_FLIP_ROUNDS | $CP_FLIP_P50_MS | $CP_FLIP_P99_MS | $CP_FLIP_MAX_MS | $CP_FLIP_PUSHED | $CP_FLIP_NEVER |")
		CP_REPORT+=("| a workload registers | $CP_REG_ROUNDS | $CP_REG_P50_MS | $CP_REG_P99_MS | $CP_REG_MAX_MS | $CP_REG_PUSHED | $CP_REG_NEVER |")
		CP_REPORT+=("| VirtualService edit on the hub | $CP_VS_ROUNDS | $CP_VS_P50_MS | $CP_VS_P99_MS | $CP_VS_MAX_MS | $CP_VS_PUSHED | $CP_VS_NEVER |")
		CP_REPORT+=("")
		CP_REPORT+=("Mesh: $CP_SERVICES services × $CP_PER_SERVICE workloads = $CP_ENDPOINTS endpoints, $CP_PROXIES connected proxies; initial sync $CP_SYNC_MS ms; \`trellis control\` VmRSS ${CP_RSS_MB:-?} MiB, peak ${CP_PEAK_MB:-?} MiB.")
	else
		CP_REPORT+=("No scale figures (see the notes).")
	fi
	if [[ -n "${CP_SIZE_ROWS:-}" ]]; then
		CP_REPORT+=("")
		CP_REPORT+=("One proxy's config as the mesh grows: \`benchtool configsize trellis DIR $CP_CONFIG_SIZES\` seeds a mesh (10 workloads per service, each calling 3 others), runs \`trellis control\` on it and connects probe proxies with 1, 4 and 16 upstreams over ADS; bytes = protobuf-encoded size of all the probe's resources:")
		CP_REPORT+=("")
		CP_REPORT+=("| mesh | upstreams | listeners / routes / clusters | endpoints | bytes | bytes per upstream |")
		CP_REPORT+=("|---|---|---|---|---|---|")
		while IFS= read -r line; do CP_REPORT+=("$line"); done <<<"$CP_SIZE_ROWS"
	fi
}
