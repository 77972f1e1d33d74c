package sidecar

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/trellis-mesh/trellis/internal/api"
)

// adminRoutes serves the sidecar's admin port:
//
//	/ready        200 once the certificate is issued and the first config applied, else 503 with the reason
//	/config_dump  the applied xDS configuration as JSON
//	/stats        counters of the proxy, plain text "name value"
//	/certs        the SVID (api.SidecarCerts): chain with subject, issuer, SPIFFE ID, serial,
//	              validity; trust bundle roots; last and next rotation, rotation count
//	/xds          the xDS client's view: connected, synced, versions, last error
//	/debug/pprof/ Go profiles (CPU, heap, allocations, goroutines) of the sidecar
func (s *Sidecar) adminRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		ok, reason := s.ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = io.WriteString(w, reason+"\n")
	})
	mux.HandleFunc("GET /config_dump", func(w http.ResponseWriter, _ *http.Request) {
		data, err := s.proxy.ConfigDump()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(data)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		s.proxy.WriteStats(w)
	})
	mux.HandleFunc("GET /certs", func(w http.ResponseWriter, _ *http.Request) {
		out, err := s.id.describe(time.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("GET /xds", func(w http.ResponseWriter, _ *http.Request) {
		xds := s.xds.Load()
		if xds == nil {
			http.Error(w, "not connected yet", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, xds.State())
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// describe is the admin /certs answer.
func (id *identity) describe(now time.Time) (*api.SidecarCerts, error) {
	s, t := id.svid.Load(), id.trust.Load()
	if s == nil || t == nil {
		return nil, errors.New("no certificate yet")
	}
	leaf := s.chain[0]
	out := &api.SidecarCerts{
		Serial:        leaf.SerialNumber.Text(16),
		NotBefore:     leaf.NotBefore.UTC(),
		NotAfter:      leaf.NotAfter.UTC(),
		Rotations:     s.rotations,
		LastRotation:  s.received.UTC(),
		NextRotation:  s.renewAt.UTC(),
		BundleUpdated: t.updated.UTC(),
		Signer:        t.signer,
		BundleRefresh: api.Duration(t.refresh),
	}
	if len(leaf.URIs) > 0 {
		out.Identity = leaf.URIs[0].String()
	}
	for _, c := range s.chain {
		out.Chain = append(out.Chain, api.NewCertInfo(c, now))
	}
	for _, r := range t.roots {
		out.Bundle = append(out.Bundle, api.NewCertInfo(r, now))
	}
	return out, nil
}
