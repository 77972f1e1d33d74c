package model

// Validation of the security kinds (security.go).

func (v *validator) peerAuthentication(s *PeerAuthenticationSpec) {}

func (v *validator) authorizationPolicy(s *AuthorizationPolicySpec) {}

func (v *validator) requestAuthentication(s *RequestAuthenticationSpec) {}
