package proxy

import (
	"io"

	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// ConfigDump returns the applied resource set as JSON in Envoy's admin
// /config_dump shape: {"configs":[listeners, routes, clusters, endpoints]},
// each resource list sorted by name. Before the first Update the lists are
// empty.
func (p *Proxy) ConfigDump() ([]byte, error) {
	set := resources.NewSet()
	if cfg := p.cfg.Load(); cfg != nil {
		set = cfg.set
	}
	return resources.ConfigDump(set)
}

// WriteStats writes every counter as "name value\n", sorted by name:
// listener.<name>.* and cluster.<name>.* with requests, responses by class,
// upstream connect failures, TLS handshake failures and active connections.
func (p *Proxy) WriteStats(w io.Writer) { p.stats.write(w) }
