package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// The sidecar fetches the JWKS of RequestAuthentications itself. The
// control plane refuses a jwksUri written as a cloud metadata or
// link-local address, but a name can resolve to one (DNS rebinding, a
// hostile resolver), so the fetcher refuses those addresses again where
// they are known for sure: at connect time, after resolution.

// errMetadataAddress refuses a connection to a metadata or link-local address.
var errMetadataAddress = errors.New("refusing to fetch a JWKS from a cloud metadata or link-local address")

// forbiddenJWKSPrefixes are the addresses no JWKS fetch may reach, beyond
// every link-local one.
var forbiddenJWKSPrefixes = []netip.Prefix{
	netip.MustParsePrefix("fd00:ec2::254/128"),  // AWS IMDS over IPv6
	netip.MustParsePrefix("100.100.100.200/32"), // Alibaba Cloud metadata
}

var (
	nat64Prefix      = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052: IPv4 in the last 4 bytes
	ipv4CompatPrefix = netip.MustParsePrefix("::/96")        // deprecated IPv4-compatible addresses
)

// forbiddenJWKSAddr reports whether a resolved address is one a JWKS
// fetch must not reach.
func forbiddenJWKSAddr(a netip.Addr) bool {
	a = a.WithZone("").Unmap()
	if a.Is6() && (nat64Prefix.Contains(a) || ipv4CompatPrefix.Contains(a)) && !a.IsUnspecified() && !a.IsLoopback() {
		b := a.As16()
		a = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	if a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsUnspecified() {
		return true
	}
	for _, p := range forbiddenJWKSPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// jwksDialControl runs before each connect of a JWKS fetch.
func jwksDialControl(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("jwks fetch: %q: %w", address, err)
	}
	if forbiddenJWKSAddr(ap.Addr()) {
		return fmt.Errorf("%w: %s", errMetadataAddress, ap.Addr())
	}
	return nil
}

// jwksClient is the HTTP client of the proxy's JWKS key cache: no
// keep-alive (a fetch every few minutes), and no connection to a metadata
// or link-local address. A proxy from the environment (HTTPS_PROXY) is
// used when set; the address check then applies to the proxy.
func jwksClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableKeepAlives = true
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: -1, Control: jwksDialControl}
	t.DialContext = d.DialContext
	return &http.Client{Transport: t}
}
