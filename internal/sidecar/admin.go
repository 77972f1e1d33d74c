package sidecar

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/pprof"
	"time"
)

// adminRoutes serves the sidecar's admin port:
//
//	/ready        200 once the certificate is issued and the first config applied, else 503 with the reason
//	/config_dump  the applied xDS configuration as JSON
//	/stats        counters of the proxy, plain text "name value"
//	/certs        the current SVID: identity, serial, validity, rotations
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
		leaf := s.id.Leaf()
		if leaf == nil {
			http.Error(w, "no certificate yet", http.StatusServiceUnavailable)
			return
		}
		out := map[string]any{
			"serial":    leaf.SerialNumber.Text(16),
			"notBefore": leaf.NotBefore.UTC().Format(time.RFC3339),
			"notAfter":  leaf.NotAfter.UTC().Format(time.RFC3339),
			"rotations": s.id.Rotations(),
		}
		if len(leaf.URIs) > 0 {
			out["identity"] = leaf.URIs[0].String()
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
