package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// freePorts prints n distinct loopback ports that are free now and lie
// below the kernel's ephemeral range, so that the outgoing connections of a
// load generator cannot take one between now and when a sidecar binds it
// (freeport's port 0 answers come from that range). All n are held until
// all are found.
func freePorts(n int) error {
	low := 32768
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				low = v
			}
		}
	}
	const floor = 10000
	if low-floor < 4*n {
		return fmt.Errorf("freeports: only %d ports between %d and the ephemeral range at %d", low-floor, floor, low)
	}
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n && tries < 20*n; tries++ {
		p := floor + rand.IntN(low-floor)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // in use (or held by us already)
		}
		held = append(held, ln)
		ports = append(ports, p)
	}
	if len(ports) < n {
		return fmt.Errorf("freeports: found only %d of %d free ports", len(ports), n)
	}
	for _, p := range ports {
		fmt.Println(p)
	}
	return nil
}
