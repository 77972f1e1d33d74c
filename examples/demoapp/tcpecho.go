package demoapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// tcpIdleTimeout closes an echo connection that sent nothing for this long.
const tcpIdleTimeout = 10 * time.Minute

// TCPGreeting is the line tcp-echo writes first on every connection.
func TCPGreeting(workload string) string { return "hello from " + workload + "\n" }

// connSet tracks open connections so shutdown can close the ones that do
// not finish within the drain window.
type connSet struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (s *connSet) add(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	s.conns[c] = struct{}{}
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.Close()
	}
}

// runTCPEcho accepts connections until ctx ends; each gets the greeting and
// then every byte it sends, back. When the client half-closes, the app
// half-closes too after echoing what it had. On shutdown it stops accepting
// and gives open connections drainTimeout before closing them.
func runTCPEcho(ctx context.Context, ln net.Listener, cfg config, logger *slog.Logger) error {
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	var (
		wg    sync.WaitGroup
		conns connSet
	)
	greeting := []byte(TCPGreeting(cfg.workload))
	var acceptErr error
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				acceptErr = fmt.Errorf("accept on %s: %w", ln.Addr(), err)
				_ = ln.Close()
			}
			break
		}
		conns.add(c)
		wg.Go(func() {
			defer conns.remove(c)
			defer c.Close()
			if err := echoConn(c, greeting); err != nil {
				logger.Debug("tcp echo connection ended", "remote", c.RemoteAddr().String(), "err", err)
			}
		})
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	timer := time.NewTimer(drainTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		logger.Info("closing tcp connections still open after drain window")
		conns.closeAll()
		<-done
	}
	return acceptErr
}

// echoConn writes the greeting, then echoes until the client half-closes
// (then half-closes back) or the connection fails.
func echoConn(c net.Conn, greeting []byte) error {
	if _, err := c.Write(greeting); err != nil {
		return fmt.Errorf("write greeting: %w", err)
	}
	buf := make([]byte, 32<<10)
	for {
		if err := c.SetReadDeadline(time.Now().Add(tcpIdleTimeout)); err != nil {
			return fmt.Errorf("set read deadline: %w", err)
		}
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return fmt.Errorf("echo: %w", werr)
			}
		}
		if errors.Is(err, io.EOF) {
			if hc, ok := c.(interface{ CloseWrite() error }); ok {
				if err := hc.CloseWrite(); err != nil {
					return fmt.Errorf("half-close: %w", err)
				}
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
	}
}
