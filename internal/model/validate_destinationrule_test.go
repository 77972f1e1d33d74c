package model

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

const drHead = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: reviews\n"

func TestDestinationRuleValidation(t *testing.T) {
	tests := []struct {
		name  string
		spec  string // appended to drHead
		errs  []string
		warns []string
	}{
		{
			name: "every implemented field",
			spec: `  trafficPolicy:
    loadBalancer: {simple: LEAST_CONN}
    connectionPool:
      tcp: {maxConnections: 1, connectTimeout: 30ms, maxConnectionDuration: 1h, idleTimeout: 0s}
      http: {http1MaxPendingRequests: 1, http2MaxRequests: 10, maxRequestsPerConnection: 1, maxRetries: 3, idleTimeout: 30s, h2UpgradePolicy: UPGRADE}
    outlierDetection: {consecutive5xxErrors: 0, consecutiveGatewayErrors: 3, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100, minHealthPercent: 50}
    retryBudget: {percent: 25, minRetryConcurrency: 5, budgetInterval: 10s}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {consistentHash: {httpCookie: {name: user, ttl: 0s}, ringHash: {minimumRingSize: 2048}}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 65537}}}
`,
		},
		{
			name: "load balancer errors",
			spec: `  trafficPolicy:
    loadBalancer: {simple: FASTEST}
    portLevelSettings:
    - port: {number: 80}
      loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}
    - port: {number: 81}
      loadBalancer:
        consistentHash: {httpHeaderName: a, httpQueryParameterName: b, ringHash: {minimumRingSize: 9000000}, maglev: {tableSize: 65536}, minimumRingSize: 10}
    - port: {number: 82}
      loadBalancer: {consistentHash: {httpCookie: {ttl: 1x}, maglev: {}}}
    - port: {number: 83}
      loadBalancer: {consistentHash: {maglev: {tableSize: 5000011}}}
`,
			errs: []string{
				`spec.trafficPolicy.loadBalancer.simple: "FASTEST" is not one of [UNSPECIFIED LEAST_CONN RANDOM PASSTHROUGH ROUND_ROBIN LEAST_REQUEST]`,
				`spec.trafficPolicy.portLevelSettings[0].loadBalancer: simple and consistentHash are mutually exclusive`,
				`spec.trafficPolicy.portLevelSettings[1].loadBalancer.consistentHash: only one of httpHeaderName, httpCookie, useSourceIp and httpQueryParameterName may be set`,
				`spec.trafficPolicy.portLevelSettings[1].loadBalancer.consistentHash: ringHash and maglev are mutually exclusive`,
				`spec.trafficPolicy.portLevelSettings[1].loadBalancer.consistentHash.minimumRingSize: must not be set with ringHash or maglev`,
				`spec.trafficPolicy.portLevelSettings[1].loadBalancer.consistentHash.ringHash.minimumRingSize: 9000000 out of range, want at most 8388608`,
				`spec.trafficPolicy.portLevelSettings[1].loadBalancer.consistentHash.maglev.tableSize: 65536 is not a prime number`,
				`spec.trafficPolicy.portLevelSettings[2].loadBalancer.consistentHash.httpCookie.name: required`,
				`spec.trafficPolicy.portLevelSettings[2].loadBalancer.consistentHash.httpCookie.ttl: invalid duration "1x": want e.g. "1.5s" or "100ms"`,
				`spec.trafficPolicy.portLevelSettings[2].loadBalancer.consistentHash.maglev.tableSize: required`,
				`spec.trafficPolicy.portLevelSettings[3].loadBalancer.consistentHash.maglev.tableSize: 5000011 out of range, want a prime below 5000011`,
			},
			warns: []string{
				`spec.trafficPolicy.portLevelSettings[1].loadBalancer.consistentHash.minimumRingSize: deprecated, use ringHash.minimumRingSize`,
			},
		},
		{
			name: "connection pool and outlier errors",
			spec: `  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: -1, connectTimeout: 0s, maxConnectionDuration: 1.5ms, idleTimeout: -1s}
      http: {http1MaxPendingRequests: -1, http2MaxRequests: -2, maxRequestsPerConnection: -3, maxRetries: -4, idleTimeout: 0s, h2UpgradePolicy: SOMETIMES}
    outlierDetection: {consecutiveErrors: -1, consecutiveLocalOriginFailures: 2, interval: 10us, baseEjectionTime: x, maxEjectionPercent: 101, minHealthPercent: -1}
  subsets:
  - name: v1
    trafficPolicy:
      connectionPool: {}
      retryBudget: {percent: 120, budgetInterval: 0s}
`,
			errs: []string{
				`spec.trafficPolicy.connectionPool.tcp.maxConnections: -1 must not be negative`,
				`spec.trafficPolicy.connectionPool.tcp.connectTimeout: "0s" must be at least 1ms`,
				`spec.trafficPolicy.connectionPool.tcp.maxConnectionDuration: "1.5ms" must be a whole number of milliseconds`,
				`spec.trafficPolicy.connectionPool.tcp.idleTimeout: invalid duration "-1s": must not be negative`,
				`spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests: -1 must not be negative`,
				`spec.trafficPolicy.connectionPool.http.http2MaxRequests: -2 must not be negative`,
				`spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection: -3 must not be negative`,
				`spec.trafficPolicy.connectionPool.http.maxRetries: -4 must not be negative`,
				`spec.trafficPolicy.connectionPool.http.idleTimeout: "0s" must be at least 1ms`,
				`spec.trafficPolicy.connectionPool.http.h2UpgradePolicy: "SOMETIMES" is not one of [DEFAULT DO_NOT_UPGRADE UPGRADE]`,
				`spec.trafficPolicy.outlierDetection.consecutiveErrors: -1 must not be negative`,
				`spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures: requires splitExternalLocalOriginErrors: true`,
				`spec.trafficPolicy.outlierDetection.interval: "10us" must be at least 1ms`,
				`spec.trafficPolicy.outlierDetection.baseEjectionTime: invalid duration "x": want e.g. "1.5s" or "100ms"`,
				`spec.trafficPolicy.outlierDetection.maxEjectionPercent: 101 out of range, want 0..100`,
				`spec.trafficPolicy.outlierDetection.minHealthPercent: -1 out of range, want 0..100`,
				`spec.subsets[0].trafficPolicy.connectionPool: one of tcp and http is required`,
				`spec.subsets[0].trafficPolicy.retryBudget.percent: 120 out of range, want 0..100`,
				`spec.subsets[0].trafficPolicy.retryBudget.budgetInterval: "0s" must be at least 1ms`,
			},
		},
		{
			name: "policy shape",
			spec: `  trafficPolicy:
    portLevelSettings:
    - {}
    - port: {number: 80}
      loadBalancer: {simple: RANDOM}
    - port: {number: 80}
      loadBalancer: {simple: ROUND_ROBIN}
  subsets:
  - name: v1
    trafficPolicy: {}
`,
			errs: []string{
				`spec.trafficPolicy.portLevelSettings[0].port: required`,
				`spec.trafficPolicy.portLevelSettings[0]: must set at least one of loadBalancer, connectionPool, outlierDetection and tls`,
				`spec.subsets[0].trafficPolicy: must set at least one field`,
			},
			warns: []string{
				`spec.trafficPolicy.portLevelSettings[2].port.number: port 80 is also set by portLevelSettings[1]; only the first applies`,
			},
		},
		{
			name: "accepted but not implemented",
			spec: `  trafficPolicy:
    loadBalancer:
      simple: PASSTHROUGH
      localityLbSetting: {enabled: true}
      warmupDurationSecs: 10s
      warmup: {duration: 10s, minimumPercent: 10, aggression: 2}
    connectionPool:
      tcp: {tcpKeepalive: {time: 7200s, interval: 75s}}
      http: {useClientProtocol: true, maxConcurrentStreams: 10}
    outlierDetection: {consecutiveErrors: 5, splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 2}
  subsets:
  - name: v1
    trafficPolicy:
      loadBalancer: {consistentHash: {httpCookie: {name: u, attributes: [{name: SameSite, value: Strict}]}}}
`,
			warns: []string{
				`spec.trafficPolicy.loadBalancer.simple: PASSTHROUGH is not implemented yet, ignored (ROUND_ROBIN is used)`,
				`spec.trafficPolicy.loadBalancer.localityLbSetting: not implemented yet, ignored`,
				`spec.trafficPolicy.loadBalancer.warmupDurationSecs: not implemented yet, ignored`,
				`spec.trafficPolicy.loadBalancer.warmup: not implemented yet, ignored`,
				`spec.trafficPolicy.connectionPool.tcp.tcpKeepalive: not implemented yet, ignored`,
				`spec.trafficPolicy.connectionPool.http.useClientProtocol: not implemented yet, ignored`,
				`spec.trafficPolicy.connectionPool.http.maxConcurrentStreams: not implemented yet, ignored`,
				`spec.trafficPolicy.outlierDetection.consecutiveErrors: deprecated, use consecutiveGatewayErrors or consecutive5xxErrors (read as consecutiveGatewayErrors)`,
				`spec.trafficPolicy.outlierDetection.splitExternalLocalOriginErrors: not implemented yet, ignored`,
				`spec.subsets[0].trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes: not implemented yet, ignored`,
			},
		},
		{
			name: "upgrade and client protocol",
			spec: `  trafficPolicy:
    connectionPool: {http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}
`,
			errs:  []string{`spec.trafficPolicy.connectionPool.http.useClientProtocol: must not be true when h2UpgradePolicy is UPGRADE`},
			warns: []string{`spec.trafficPolicy.connectionPool.http.useClientProtocol: not implemented yet, ignored`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			js, err := yaml.YAMLToJSONStrict([]byte(drHead + tc.spec))
			if err != nil {
				t.Fatal(err)
			}
			obj, ferrs := decodeDocument(js)
			if len(ferrs) > 0 {
				t.Fatalf("decode: %v", ferrs[0])
			}
			warns, err := Validate(obj)
			const prefix = "DestinationRule default/r: "
			var gotErrs []string
			for _, e := range errorLines(err) {
				gotErrs = append(gotErrs, strings.TrimPrefix(e, prefix))
			}
			var gotWarns []string
			for _, w := range warns {
				gotWarns = append(gotWarns, strings.TrimPrefix(w, prefix))
			}
			if diff := cmp.Diff(tc.errs, gotErrs); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.warns, gotWarns); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIsPrime(t *testing.T) {
	for n, want := range map[uint64]bool{0: false, 1: false, 2: true, 3: true, 4: false, 9: false, 25: false, 65537: true, 65536: false, 5000011: true, 4999999: true, 4999997: false, 1000001: false} {
		if got := isPrime(n); got != want {
			t.Errorf("isPrime(%d) = %v, want %v", n, got, want)
		}
	}
}
