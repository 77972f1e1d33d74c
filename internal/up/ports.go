package up

import (
	"fmt"
	"net"
)

// freePorts returns n distinct free loopback addresses. The listeners are
// held until all n are chosen so that no address is handed out twice; a
// process may still race for one after they close, which the caller reports.
func freePorts(n int) ([]string, error) {
	addrs := make([]string, 0, n)
	held := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		held = append(held, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}
