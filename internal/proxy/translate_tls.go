package proxy

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/trellis-mesh/trellis/internal/proxy/tlsutil"
)

// SDS secret names resolved locally from the Identity; never sent over xDS.
const (
	sdsIdentity = "default"
	sdsBundle   = "ROOTCA"
)

var (
	typeDownstreamTLS = typeURL(&tlsv3.DownstreamTlsContext{})
	typeUpstreamTLS   = typeURL(&tlsv3.UpstreamTlsContext{})
)

func unpackAny(a *anypb.Any, wantType string, dst proto.Message) error {
	if a == nil {
		return fmt.Errorf("typed_config: missing")
	}
	if a.GetTypeUrl() != wantType {
		return fmt.Errorf("typed_config: type %q not supported, want %q", a.GetTypeUrl(), wantType)
	}
	if err := a.UnmarshalTo(dst); err != nil {
		return fmt.Errorf("typed_config: %w", err)
	}
	return nil
}

// checkCommonTLS validates the parts of a CommonTlsContext that Trellis
// resolves locally: TLS 1.3 only, SDS secrets "default" and "ROOTCA", no
// inline key material.
func checkCommonTLS(c *tlsv3.CommonTlsContext) error {
	if c == nil {
		return nil
	}
	if p := c.GetTlsParams(); p != nil {
		if v := p.GetTlsMaximumProtocolVersion(); v != tlsv3.TlsParameters_TLS_AUTO && v != tlsv3.TlsParameters_TLSv1_3 {
			return fmt.Errorf("common_tls_context.tls_params.tls_maximum_protocol_version: %s not supported, only TLSv1_3", v)
		}
		if len(p.GetCipherSuites()) > 0 || len(p.GetEcdhCurves()) > 0 {
			return fmt.Errorf("common_tls_context.tls_params: cipher_suites/ecdh_curves not supported")
		}
	}
	if len(c.GetTlsCertificates()) > 0 {
		return fmt.Errorf("common_tls_context.tls_certificates: inline certificates not supported, use SDS %q", sdsIdentity)
	}
	for i, s := range c.GetTlsCertificateSdsSecretConfigs() {
		if s.GetName() != sdsIdentity {
			return fmt.Errorf("common_tls_context.tls_certificate_sds_secret_configs[%d].name: %q not supported, want %q", i, s.GetName(), sdsIdentity)
		}
	}
	return nil
}

// validationSANs returns the allowed peer SPIFFE IDs from the validation
// context (match_typed_subject_alt_names, URI + exact only).
func validationSANs(c *tlsv3.CommonTlsContext) ([]spiffeid.ID, error) {
	var vc *tlsv3.CertificateValidationContext
	var sds *tlsv3.SdsSecretConfig
	field := "common_tls_context.validation_context"
	switch t := c.GetValidationContextType().(type) {
	case nil:
	case *tlsv3.CommonTlsContext_ValidationContext:
		vc = t.ValidationContext
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		sds = t.ValidationContextSdsSecretConfig
		field = "common_tls_context.validation_context_sds_secret_config"
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		vc = t.CombinedValidationContext.GetDefaultValidationContext()
		sds = t.CombinedValidationContext.GetValidationContextSdsSecretConfig()
		field = "common_tls_context.combined_validation_context.default_validation_context"
	default:
		return nil, fmt.Errorf("common_tls_context.validation_context_type: %T not supported", t)
	}
	if sds != nil && sds.GetName() != sdsBundle {
		return nil, fmt.Errorf("common_tls_context: validation SDS secret %q not supported, want %q", sds.GetName(), sdsBundle)
	}
	if vc == nil {
		return nil, nil
	}
	if vc.GetTrustedCa() != nil || len(vc.GetMatchSubjectAltNames()) > 0 || len(vc.GetVerifyCertificateSpki()) > 0 || len(vc.GetVerifyCertificateHash()) > 0 {
		return nil, fmt.Errorf("%s: only match_typed_subject_alt_names is supported", field)
	}
	var ids []spiffeid.ID
	for i, m := range vc.GetMatchTypedSubjectAltNames() {
		f := fmt.Sprintf("%s.match_typed_subject_alt_names[%d]", field, i)
		if m.GetSanType() != tlsv3.SubjectAltNameMatcher_URI {
			return nil, fmt.Errorf("%s.san_type: %s not supported, want URI", f, m.GetSanType())
		}
		exact, ok := m.GetMatcher().GetMatchPattern().(*matcherv3.StringMatcher_Exact)
		if !ok || m.GetMatcher().GetIgnoreCase() {
			return nil, fmt.Errorf("%s.matcher: only a case-sensitive exact match is supported", f)
		}
		id, err := spiffeid.FromString(exact.Exact)
		if err != nil {
			return nil, fmt.Errorf("%s.matcher.exact: %w", f, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func translateDownstreamTLS(ts *corev3.TransportSocket, kind listenerKind) (*downstreamTLS, error) {
	var ctx tlsv3.DownstreamTlsContext
	if err := unpackAny(ts.GetTypedConfig(), typeDownstreamTLS, &ctx); err != nil {
		return nil, fmt.Errorf("transport_socket.%w", err)
	}
	if !ctx.GetRequireClientCertificate().GetValue() {
		return nil, fmt.Errorf("transport_socket.require_client_certificate: must be true (mutual TLS only)")
	}
	if err := checkCommonTLS(ctx.GetCommonTlsContext()); err != nil {
		return nil, fmt.Errorf("transport_socket.%w", err)
	}
	if _, err := validationSANs(ctx.GetCommonTlsContext()); err != nil {
		return nil, fmt.Errorf("transport_socket.%w", err)
	}
	alpn := ctx.GetCommonTlsContext().GetAlpnProtocols()
	if len(alpn) == 0 {
		alpn = defaultALPN(kind)
	}
	return &downstreamTLS{alpn: alpn}, nil
}

func translateUpstreamTLS(ts *corev3.TransportSocket, http2 bool) (*upstreamTLS, error) {
	var ctx tlsv3.UpstreamTlsContext
	if err := unpackAny(ts.GetTypedConfig(), typeUpstreamTLS, &ctx); err != nil {
		return nil, fmt.Errorf("transport_socket.%w", err)
	}
	if err := checkCommonTLS(ctx.GetCommonTlsContext()); err != nil {
		return nil, fmt.Errorf("transport_socket.%w", err)
	}
	ids, err := validationSANs(ctx.GetCommonTlsContext())
	if err != nil {
		return nil, fmt.Errorf("transport_socket.%w", err)
	}
	alpn := ctx.GetCommonTlsContext().GetAlpnProtocols()
	if len(alpn) == 0 {
		if http2 {
			alpn = []string{tlsutil.ALPNH2}
		} else {
			alpn = []string{tlsutil.ALPNHTTP1}
		}
	}
	return &upstreamTLS{allowed: ids, alpn: alpn}, nil
}

func defaultALPN(kind listenerKind) []string {
	if kind == kindTCP {
		return []string{tlsutil.ALPNTCP}
	}
	return []string{tlsutil.ALPNH2, tlsutil.ALPNHTTP1}
}
