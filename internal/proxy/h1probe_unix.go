//go:build unix

package proxy

import (
	"errors"
	"syscall"
)

// probeIdle reports whether a pooled connection still looks usable: nothing
// to read and no EOF pending (one non-blocking MSG_PEEK, no allocation). An
// upstream that closed an idle keep-alive connection (Node.js does after 5s)
// is found here, before a request that cannot be retried is sent on it.
func (uc *upConn) probeIdle() bool {
	if uc.raw == nil {
		return true
	}
	uc.probeAlive = true
	if err := uc.raw.Read(uc.probeFn); err != nil {
		return false
	}
	return uc.probeAlive
}

// peek is the callback of probeIdle, bound once per connection.
func (uc *upConn) peek(fd uintptr) bool {
	n, _, err := syscall.Recvfrom(int(fd), uc.probeBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	// EAGAIN: idle and open. Anything else (bytes, EOF, an error) means the
	// connection cannot carry a new request.
	uc.probeAlive = n < 0 && errors.Is(err, syscall.EAGAIN)
	return true
}
