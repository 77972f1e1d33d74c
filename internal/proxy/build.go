package proxy

import (
	"fmt"

	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// build validates set and translates it into a runtimeConfig (its applied
// set is for the caller to add). prev (may be nil) supplies upstream
// transports to carry over for unchanged clusters. It has no side effects
// besides registering stats names.
func (p *Proxy) build(set *resources.Set, prev *runtimeConfig) (*runtimeConfig, error) {
	if set == nil {
		return nil, fmt.Errorf("nil resource set")
	}
	cfg := &runtimeConfig{
		listeners: make(map[string]*listenerConfig, len(set.Listeners)),
		routes:    make(map[string]*routeTable, len(set.Routes)),
		clusters:  make(map[string]*cluster, len(set.Clusters)),
	}
	for _, name := range resources.SortedKeys(set.Endpoints) {
		cla := set.Endpoints[name]
		if cla == nil {
			return nil, fmt.Errorf("cluster load assignment %q: nil resource", name)
		}
		if err := validateCLA(cla); err != nil {
			return nil, fmt.Errorf("cluster load assignment %q: %w", name, err)
		}
	}
	for _, name := range resources.SortedKeys(set.Clusters) {
		c := set.Clusters[name]
		if c == nil || c.GetName() != name {
			return nil, fmt.Errorf("cluster %q: name: resource name %q does not match its key", name, c.GetName())
		}
		tc, err := translateCluster(c, set.Endpoints)
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", name, err)
		}
		tc.stats = p.stats.cluster(name)
		if p.legacyHTTP1 && !tc.http2 && (tc.pool.maxRequestsPerConn > 0 || tc.pool.maxConnDuration > 0) {
			p.log.Warn("max_requests_per_connection and max_connection_duration are not applied to HTTP/1.1 clusters in legacy mode "+
				"(TRELLIS_PROXY_LEGACY_HTTP1)", "cluster", name)
		}
		cfg.clusters[name] = tc
	}
	for _, name := range resources.SortedKeys(set.Routes) {
		rc := set.Routes[name]
		if rc == nil || rc.GetName() != name {
			return nil, fmt.Errorf("route configuration %q: name: resource name %q does not match its key", name, rc.GetName())
		}
		rt, err := translateRouteConfig(rc)
		if err != nil {
			return nil, fmt.Errorf("route configuration %q: %w", name, err)
		}
		cfg.routes[name] = rt
	}
	addrs := map[string]string{}
	for _, name := range resources.SortedKeys(set.Listeners) {
		l := set.Listeners[name]
		if l == nil || l.GetName() != name {
			return nil, fmt.Errorf("listener %q: name: resource name %q does not match its key", name, l.GetName())
		}
		lc, err := translateListener(l, p.stats)
		if err != nil {
			return nil, fmt.Errorf("listener %q: %w", name, err)
		}
		if err := p.bindAuthn(lc); err != nil {
			return nil, fmt.Errorf("listener %q: %w", name, err)
		}
		if other, dup := addrs[lc.address]; dup {
			return nil, fmt.Errorf("listener %q: address: %s already used by listener %q", name, lc.address, other)
		}
		addrs[lc.address] = name
		cfg.listeners[name] = lc
	}
	cfg.bindLimiters(prev) // rate limit buckets: kept for unchanged limits
	// Transports and cluster state last, once the whole set is known to be
	// valid. A state carried over gets its new endpoints at commit, since
	// building must not change what the running config uses.
	for name, c := range cfg.clusters {
		old := prev.cluster(name)
		if old != nil && old.state.policy.equal(&c.policy) {
			c.state = old.state
		} else {
			c.state = newClusterState(c.policy, c.stats)
			c.state.setEndpoints(c.endpoints)
		}
		if old != nil && old.up.fingerprint == c.fingerprint() {
			c.up = old.up
			continue
		}
		c.up = newUpstream(c, p.id, p.netHTTP2)
	}
	return cfg, nil
}

// commitClusters runs once cfg has replaced prev: carried-over cluster
// states take their new endpoints and every state's outlier timer runs;
// states and transports prev used and cfg does not are stopped and retired
// (in-flight requests keep their connections).
func (cfg *runtimeConfig) commitClusters(prev *runtimeConfig) {
	for name, c := range cfg.clusters {
		if old := prev.cluster(name); old != nil && old.state == c.state {
			c.state.setEndpoints(c.endpoints)
		}
		c.state.start()
	}
	if prev == nil {
		return
	}
	for name, old := range prev.clusters {
		c := cfg.clusters[name]
		if c == nil || c.state != old.state {
			old.state.stop()
		}
		if c == nil || c.up != old.up {
			old.up.retire()
		}
	}
}

// stopClusters stops every cluster state and retires every transport (at
// shutdown).
func (cfg *runtimeConfig) stopClusters() {
	for _, c := range cfg.clusters {
		c.state.stop()
		c.up.retire()
	}
}

func (c *runtimeConfig) cluster(name string) *cluster {
	if c == nil {
		return nil
	}
	return c.clusters[name]
}
