package model

// frontEnd validates the kinds converted by convert*.go and the rate
// limits; it reports whether it knew obj's kind.
func (v *validator) frontEnd(obj Object) bool {
	switch o := obj.(type) {
	case *TrafficSplit:
		v.trafficSplit(o)
	case *ServiceProfile:
		v.serviceProfile(o)
		if !o.ServesAllClients() {
			v.warnf("metadata.namespace", "a ServiceProfile outside its service's namespace applies, in Linkerd, to the clients of its namespace only: not implemented, ignored")
		}
	case *GatewayHTTPRoute:
		v.gatewayHTTPRoute(o)
	case *RateLimit:
		v.rateLimit(&o.Spec)
	case *EnvoyFilter:
		v.envoyFilter(&o.Spec)
	case *PeerAuthentication:
		v.peerAuthentication(&o.Spec)
	case *AuthorizationPolicy:
		v.authorizationPolicy(&o.Spec)
	case *RequestAuthentication:
		v.requestAuthentication(&o.Spec)
	default:
		return false
	}
	return true
}

// valid reports whether obj passes validation.
func valid(obj Object) bool { return len(validate(obj, nil)) == 0 }
