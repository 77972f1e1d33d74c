package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestForbiddenJWKSAddr(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"169.254.169.254", true},
		{"169.254.0.1", true},
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"::ffff:169.254.169.254", true},
		{"64:ff9b::a9fe:a9fe", true}, // NAT64 169.254.169.254
		{"::a9fe:a9fe", true},        // IPv4-compatible
		{"fd00:ec2::254", true},
		{"100.100.100.200", true},
		{"0.0.0.0", true},
		{"::", true},
		{"127.0.0.1", false},
		{"::1", false},
		{"10.0.0.1", false},
		{"203.0.113.7", false},
		{"2001:db8::1", false},
	} {
		if got := forbiddenJWKSAddr(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("%s: forbidden %v, want %v", tc.addr, got, tc.want)
		}
	}
}

// TestJWKSClientRefusesResolvedMetadataAddress: a name that resolves to the
// metadata address is refused at connect time, while loopback works.
func TestJWKSClientRefusesResolvedMetadataAddress(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"keys":[]}`)) }))
	defer srv.Close()
	c := jwksClient()
	res, err := c.Get(srv.URL)
	if err != nil {
		t.Fatalf("loopback JWKS: %v", err)
	}
	res.Body.Close()
	// The dialer sees the resolved address: simulate a name resolving to
	// 169.254.169.254 by dialing it through the same dialer.
	tr := c.Transport.(*http.Transport)
	_, err = tr.DialContext(context.Background(), "tcp", "169.254.169.254:80")
	if !errors.Is(err, errMetadataAddress) {
		t.Errorf("dial 169.254.169.254: %v, want %v", err, errMetadataAddress)
	}
	_, err = tr.DialContext(context.Background(), "tcp", net.JoinHostPort("fe80::1", "80"))
	if err == nil {
		t.Errorf("dial fe80::1: no error")
	}
}
