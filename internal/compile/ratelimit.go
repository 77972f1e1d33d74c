package compile

import (
	"fmt"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/model"
)

// localRateLimitFilter is the HTTP filter of ADR 001's local rate limiting.
const localRateLimitFilter = "envoy.filters.http.local_ratelimit"

// envoyFilterLimits are the rate limits of one valid EnvoyFilter.
type envoyFilterLimits struct {
	filter *model.EnvoyFilter
	limits []model.RateLimitSpec // Port 0: every inbound HTTP port
}

// addRateLimits indexes the valid RateLimits by service and the valid
// EnvoyFilters in precedence order: those of a workload's own namespace
// before those of Istio's root namespace, each by name.
func (ix *Index) addRateLimits(in *Input) {
	ix.rateLimits = map[model.ServiceRef][]*model.RateLimit{}
	for _, r := range in.RateLimits {
		if r == nil {
			continue
		}
		if _, err := model.Validate(r); err != nil {
			continue
		}
		ref := model.ResolveHost(r.Spec.Service, r.NamespaceOrDefault())
		ix.rateLimits[ref] = append(ix.rateLimits[ref], r)
	}
	for _, rs := range ix.rateLimits {
		sort.Slice(rs, func(i, j int) bool { return rs[i].Key().String() < rs[j].Key().String() })
	}
	for _, e := range in.EnvoyFilters {
		if e == nil {
			continue
		}
		if limits := e.RateLimits(); len(limits) > 0 {
			ix.filterRLs = append(ix.filterRLs, envoyFilterLimits{filter: e, limits: limits})
		}
	}
	sort.Slice(ix.filterRLs, func(i, j int) bool { return efPrecedes(ix.filterRLs[i].filter, ix.filterRLs[j].filter) })
}

// rateLimit is the limit in force on one inbound port of w, or nil. A
// RateLimit for w's service wins over an EnvoyFilter (the Trellis resource
// is the explicit one); among RateLimits one naming the port wins over one
// for every port, then the first by namespace/name; among EnvoyFilters the
// first that limits the port, its bucket for the port before its
// filter-wide one (as a per-route config overrides the filter's in Envoy).
func (ix *Index) rateLimit(w *model.Workload, port uint32) *model.RateLimitSpec {
	var wide *model.RateLimitSpec
	for _, r := range ix.rateLimits[serviceRef(w)] {
		switch r.Spec.Port {
		case port:
			return &r.Spec
		case 0:
			if wide == nil {
				wide = &r.Spec
			}
		}
	}
	if wide != nil {
		return wide
	}
	for _, f := range ix.filterRLs {
		if !f.filter.Selects(w) {
			continue
		}
		for i := range f.limits {
			switch f.limits[i].Port {
			case port:
				return &f.limits[i]
			case 0:
				if wide == nil {
					wide = &f.limits[i]
				}
			}
		}
		if wide != nil {
			return wide
		}
	}
	return nil
}

func serviceRef(w *model.Workload) model.ServiceRef {
	return model.ServiceRef{Namespace: w.NamespaceOrDefault(), Name: w.Spec.Service}
}

// rateLimitedRoutes applies rl to an inbound virtual host: the service-wide
// bucket in the virtual host's typed_per_filter_config, and before the
// catch-all route one route per match of each of rl's routes, each with its
// own bucket, all to the inbound cluster. It returns the HTTP filters,
// local_ratelimit (config without a bucket: it only enables the per-route
// configs) before the router.
func rateLimitedRoutes(vh *routev3.VirtualHost, name string, rl *model.RateLimitSpec) ([]*hcmv3.HttpFilter, error) {
	if rl.TokenBucket != nil {
		cfg, err := localRateLimit(name, rl.TokenBucket, rl.ResponseHeadersToAdd)
		if err != nil {
			return nil, err
		}
		vh.TypedPerFilterConfig = map[string]*anypb.Any{localRateLimitFilter: cfg}
	}
	var routes []*routev3.Route
	for i := range rl.Routes {
		r := &rl.Routes[i]
		cfg, err := localRateLimit(name, r.TokenBucket, rl.ResponseHeadersToAdd)
		if err != nil {
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		matches := r.Match
		if len(matches) == 0 {
			matches = []model.HTTPMatchRequest{{}}
		}
		for j := range matches {
			route := prefixRoute(name)
			route.Name = fmt.Sprintf("ratelimit.routes[%d].match[%d]", i, j)
			if r.Name != "" {
				route.Name += " " + r.Name
			}
			route.Match = routeMatch(&matches[j])
			route.TypedPerFilterConfig = map[string]*anypb.Any{localRateLimitFilter: cfg}
			routes = append(routes, route)
		}
	}
	vh.Routes = append(routes, vh.Routes...)
	filter, err := toAny(&localratelimitv3.LocalRateLimit{StatPrefix: name})
	if err != nil {
		return nil, err
	}
	router, err := routerFilters()
	if err != nil {
		return nil, err
	}
	lrl := &hcmv3.HttpFilter{Name: localRateLimitFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: filter}}
	return append([]*hcmv3.HttpFilter{lrl}, router...), nil
}

// localRateLimit is the per-route LocalRateLimit of a bucket: enabled and
// enforced for every request, with the x-ratelimit-* headers of draft 03,
// and headers added to the reply of a refused request.
func localRateLimit(name string, b *model.TokenBucket, headers []model.RateLimitHeader) (*anypb.Any, error) {
	tokens, every := b.Fill()
	all := &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}}
	return toAny(&localratelimitv3.LocalRateLimit{
		StatPrefix: name,
		TokenBucket: &typev3.TokenBucket{
			MaxTokens:     b.MaxTokens,
			TokensPerFill: wrapperspb.UInt32(tokens),
			FillInterval:  duration(every),
		},
		FilterEnabled:           all,
		FilterEnforced:          all,
		EnableXRatelimitHeaders: ratelimitv3.XRateLimitHeadersRFCVersion_DRAFT_VERSION_03,
		ResponseHeadersToAdd:    limitedReplyHeaders(headers),
	})
}

// limitedReplyHeaders are the response_headers_to_add of a RateLimit's
// headers. Envoy reads a value as a format string, so a literal "%" is
// written "%%"; an empty value is kept (keep_empty_value), as the
// RateLimit asks for the header.
func limitedReplyHeaders(hs []model.RateLimitHeader) []*corev3.HeaderValueOption {
	if len(hs) == 0 {
		return nil
	}
	out := make([]*corev3.HeaderValueOption, 0, len(hs))
	for _, h := range hs {
		action := corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
		if h.AppendAction != "" {
			action = corev3.HeaderValueOption_HeaderAppendAction(corev3.HeaderValueOption_HeaderAppendAction_value[h.AppendAction])
		}
		out = append(out, &corev3.HeaderValueOption{
			Header:         &corev3.HeaderValue{Key: h.Name, Value: strings.ReplaceAll(h.Value, "%", "%%")},
			AppendAction:   action,
			KeepEmptyValue: h.Value == "",
		})
	}
	return out
}
