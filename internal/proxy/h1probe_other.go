//go:build !unix

package proxy

// probeIdle cannot peek without blocking here; requests that cannot be
// retried rely on the upstream keeping idle connections open.
func (uc *upConn) probeIdle() bool { return true }

func (uc *upConn) peek(uintptr) bool { return true }
