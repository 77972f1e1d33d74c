package proxy

import (
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	t.Cleanup(func() {
		_ = a.Close()
		_ = b.Close()
	})
	return a, b
}

func TestPipeIdleTimeout(t *testing.T) {
	client, down := tcpPair(t)
	up, server := tcpPair(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pipe(down, up, 150*time.Millisecond)
	}()
	// Traffic in one direction keeps the connection alive past the timeout.
	for range 4 {
		if _, err := client.Write([]byte("x")); err != nil {
			t.Fatalf("write: %v", err)
		}
		if _, err := io.ReadFull(server, make([]byte, 1)); err != nil {
			t.Fatalf("read: %v", err)
		}
		time.Sleep(75 * time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("pipe ended while active")
	default:
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("idle pipe not closed")
	}
	_ = server.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := server.Read(make([]byte, 1)); err == nil {
		t.Error("upstream still open after idle timeout")
	}
}
