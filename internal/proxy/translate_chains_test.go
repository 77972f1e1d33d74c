package proxy

import (
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/proxy/pathnorm"
	"github.com/trellis-mesh/trellis/internal/proxy/proxytest"
)

func TestTranslateFilterChains(t *testing.T) {
	rc := proxytest.RouteConfig(inName, proxytest.PrefixRoute("/", inName, 0))
	tlsHCM, plainHCM := proxytest.HCM(t, "", rc, true), proxytest.HCM(t, "", rc, false)
	tcp := proxytest.TCPProxy(t, inName)
	dtls := proxytest.DownstreamTLS(t, "h2", "http/1.1")
	listener := func(inspect bool, chains ...*listenerv3.FilterChain) *listenerv3.Listener {
		l := &listenerv3.Listener{Name: inName, Address: proxytest.Addr(t, "127.0.0.1:1"), FilterChains: chains}
		if inspect {
			l.ListenerFilters = []*listenerv3.ListenerFilter{tlsInspector(t)}
		}
		return l
	}
	type shape struct {
		inspect, tls, other, otherTLS, setXFCC, otherXFCC bool
		kind                                              listenerKind
	}
	tests := []struct {
		name string
		l    *listenerv3.Listener
		want shape
		err  string
	}{
		{name: "strict", l: listener(false, chainFor("", tlsHCM, dtls)),
			want: shape{tls: true, setXFCC: true, kind: kindHTTP}},
		{name: "strict with inspector and match", l: listener(true, chainFor(transportTLS, tlsHCM, dtls)),
			want: shape{inspect: true, tls: true, setXFCC: true, kind: kindHTTP}},
		{name: "permissive", l: listener(true, chainFor(transportTLS, tlsHCM, dtls), chainFor(transportRaw, plainHCM, nil)),
			want: shape{inspect: true, tls: true, other: true, setXFCC: true, kind: kindHTTP}},
		{name: "permissive raw first", l: listener(true, chainFor(transportRaw, plainHCM, nil), chainFor(transportTLS, tlsHCM, dtls)),
			want: shape{inspect: true, other: true, otherTLS: true, otherXFCC: true, kind: kindHTTP}},
		{name: "permissive tcp", l: listener(true, chainFor(transportTLS, tcp, proxytest.DownstreamTLS(t, "trellis-tcp")), chainFor(transportRaw, tcp, nil)),
			want: shape{inspect: true, tls: true, other: true, kind: kindTCP}},
		{name: "disable", l: listener(false, chainFor("", plainHCM, nil)), want: shape{kind: kindHTTP}},
		{name: "disable with match", l: listener(false, chainFor(transportRaw, plainHCM, nil)), want: shape{kind: kindHTTP}},

		{name: "no chain", l: listener(true), err: "filter_chains: 0 chains"},
		{name: "three chains", l: listener(true, chainFor(transportTLS, tlsHCM, dtls), chainFor(transportRaw, plainHCM, nil), chainFor(transportRaw, plainHCM, nil)),
			err: "filter_chains: 3 chains"},
		{name: "two chains without inspector", l: listener(false, chainFor(transportTLS, tlsHCM, dtls), chainFor(transportRaw, plainHCM, nil)),
			err: "need listener_filters envoy.filters.listener.tls_inspector"},
		{name: "two chains without match", l: listener(true, chainFor(transportTLS, tlsHCM, dtls), chainFor("", plainHCM, nil)),
			err: "filter_chains[1].filter_chain_match.transport_protocol: missing"},
		{name: "two plaintext chains", l: listener(true, chainFor(transportRaw, plainHCM, nil), chainFor(transportRaw, plainHCM, nil)),
			err: "want one chain with transport_protocol"},
		{name: "http and tcp chains", l: listener(true, chainFor(transportTLS, tlsHCM, dtls), chainFor(transportRaw, tcp, nil)),
			err: "an HTTP and a TCP chain"},
		{name: "tls match without socket", l: listener(true, chainFor(transportTLS, plainHCM, nil)),
			err: `"tls" on a chain without a TLS transport_socket`},
		{name: "raw match with socket", l: listener(true, chainFor(transportRaw, tlsHCM, dtls)),
			err: `"raw_buffer" on a chain with a transport_socket`},
		{name: "unknown transport", l: listener(true, chainFor("quic", tlsHCM, dtls)), err: `"quic" not supported`},
		{name: "server names", l: func() *listenerv3.Listener {
			l := listener(true, chainFor(transportTLS, tlsHCM, dtls))
			l.FilterChains[0].FilterChainMatch.ServerNames = []string{"a.example"}
			return l
		}(), err: "filter_chains[0].filter_chain_match: only transport_protocol is supported"},
		{name: "destination port", l: func() *listenerv3.Listener {
			l := listener(false, chainFor("", tlsHCM, dtls))
			l.FilterChains[0].FilterChainMatch = &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(80)}
			return l
		}(), err: "only transport_protocol is supported"},
		{name: "unknown listener filter", l: func() *listenerv3.Listener {
			l := listener(false, chainFor("", tlsHCM, dtls))
			l.ListenerFilters = []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.http_inspector",
				ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: proxytest.Any(t, &hcmv3.HttpConnectionManager{})}}}
			return l
		}(), err: "listener_filters[0] (\"envoy.filters.listener.http_inspector\"): unknown listener filter"},
		{name: "tls inspector option", l: func() *listenerv3.Listener {
			l := listener(false, chainFor("", tlsHCM, dtls))
			l.ListenerFilters = []*listenerv3.ListenerFilter{{Name: tlsInspectorName, ConfigType: &listenerv3.ListenerFilter_TypedConfig{
				TypedConfig: proxytest.Any(t, &tlsinspectorv3.TlsInspector{CloseConnectionOnClientHelloParsingErrors: true})}}}
			return l
		}(), err: "only the default tls_inspector"},
		{name: "continue on timeout", l: func() *listenerv3.Listener {
			l := listener(true, chainFor(transportTLS, tlsHCM, dtls))
			l.ContinueOnListenerFiltersTimeout = true
			return l
		}(), err: "continue_on_listener_filters_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lc, err := translateListener(tt.l, newStatsRegistry())
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("translate: %v", err)
			}
			got := shape{inspect: lc.inspect, tls: lc.tls != nil, other: lc.other != nil, setXFCC: lc.setXFCC, kind: lc.kind}
			if o := lc.other; o != nil {
				got.otherTLS, got.otherXFCC = o.tls != nil, o.setXFCC
				if o.stats != lc.stats || o.name != lc.name || o.address != lc.address {
					t.Error("the second chain does not share the listener's name, address and stats")
				}
			}
			if got != tt.want {
				t.Fatalf("translated %+v, want %+v", got, tt.want)
			}
			// chain() serves each transport from the chain that has it.
			for _, isTLS := range []bool{true, false} {
				c := lc.chain(isTLS)
				hasChain := isTLS && (got.tls || got.otherTLS) || !isTLS && (!got.tls || got.other && !got.otherTLS)
				if (c != nil) != hasChain || c != nil && (c.tls != nil) != isTLS {
					t.Errorf("chain(%v) = %v, want a chain: %v", isTLS, c, hasChain)
				}
			}
		})
	}
}

func TestTranslateSniffTimeout(t *testing.T) {
	rc := proxytest.RouteConfig(inName, proxytest.PrefixRoute("/", inName, 0))
	l := withSniffTimeout(permissiveListener(t, inName, "127.0.0.1:1", proxytest.HCM(t, "", rc, true), proxytest.HCM(t, "", rc, false)), 250*time.Millisecond)
	lc, err := translateListener(l, newStatsRegistry())
	if err != nil || lc.sniffTimeout != 250*time.Millisecond {
		t.Fatalf("translate: %v, sniff timeout %v", err, lc.sniffTimeout)
	}
}

func TestTranslatePathOptions(t *testing.T) {
	rc := proxytest.RouteConfig(inName, proxytest.PrefixRoute("/", inName, 0))
	tests := []struct {
		mutate func(h *hcmv3.HttpConnectionManager)
		want   pathnorm.Options
		err    string
	}{
		{mutate: func(*hcmv3.HttpConnectionManager) {}, want: pathnorm.Options{}},
		{mutate: func(h *hcmv3.HttpConnectionManager) {
			h.NormalizePath, h.MergeSlashes = wrapperspb.Bool(true), true
			h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD
		}, want: pathnorm.Options{NormalizePath: true, MergeSlashes: true, EscapedSlashes: pathnorm.UnescapeAndForward}},
		{mutate: func(h *hcmv3.HttpConnectionManager) {
			h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_REJECT_REQUEST
		}, want: pathnorm.Options{EscapedSlashes: pathnorm.RejectRequest}},
		{mutate: func(h *hcmv3.HttpConnectionManager) {
			h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT
		}, want: pathnorm.Options{EscapedSlashes: pathnorm.UnescapeAndRedirect}},
		{mutate: func(h *hcmv3.HttpConnectionManager) {
			h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_KEEP_UNCHANGED
			h.MergeSlashes = true
		}, want: pathnorm.Options{MergeSlashes: true}},
		{mutate: func(h *hcmv3.HttpConnectionManager) {
			h.PathNormalizationOptions = &hcmv3.HttpConnectionManager_PathNormalizationOptions{}
		}, err: "path_normalization_options: not supported"},
	}
	for i, tt := range tests {
		f := proxytest.HCM(t, "", rc, false)
		var h hcmv3.HttpConnectionManager
		if err := f.GetTypedConfig().UnmarshalTo(&h); err != nil {
			t.Fatal(err)
		}
		tt.mutate(&h)
		f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: proxytest.Any(t, &h)}
		lc, err := translateListener(proxytest.Listener(t, inName, "127.0.0.1:1", f, nil), newStatsRegistry())
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%d: error %v, want %q", i, err, tt.err)
			}
			continue
		}
		if err != nil || lc.pathOpts != tt.want {
			t.Errorf("%d: %+v, %v; want %+v", i, lc.pathOpts, err, tt.want)
		}
	}
}
