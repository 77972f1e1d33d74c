package proxy

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/trellis-mesh/trellis/internal/proxy/retry"
)

func TestReplayBodyWhole(t *testing.T) {
	b := newReplayBody(io.NopCloser(strings.NewReader("hello, retry")))
	r1, _ := b.reader()
	got, err := io.ReadAll(r1)
	if err != nil || string(got) != "hello, retry" {
		t.Fatalf("first attempt read %q, %v", got, err)
	}
	r2, ok := b.reader()
	if !ok {
		t.Fatal("body not replayable")
	}
	if got, err := io.ReadAll(r2); err != nil || string(got) != "hello, retry" {
		t.Fatalf("retry read %q, %v", got, err)
	}
	if _, err := r1.Read(make([]byte, 1)); !errors.Is(err, errAttemptAbandoned) {
		t.Errorf("abandoned reader: %v", err)
	}
}

// TestReplayBodyMidStream: a retry starts before the caller sent the whole
// body; it gets what the first attempt read, then the rest as it arrives.
func TestReplayBodyMidStream(t *testing.T) {
	pr, pw := io.Pipe()
	b := newReplayBody(pr)
	r1, _ := b.reader()
	go func() { _, _ = pw.Write([]byte("part1-")) }()
	buf := make([]byte, 64)
	n, err := r1.Read(buf)
	if err != nil || string(buf[:n]) != "part1-" {
		t.Fatalf("first read %q, %v", buf[:n], err)
	}
	r2, _ := b.reader()
	go func() {
		_, _ = pw.Write([]byte("part2"))
		_ = pw.Close()
	}()
	got, err := io.ReadAll(r2)
	if err != nil || string(got) != "part1-part2" {
		t.Fatalf("retry read %q, %v", got, err)
	}
}

func TestReplayBodyOverflow(t *testing.T) {
	big := bytes.Repeat([]byte("x"), retry.MaxBufferedBody+10)
	b := newReplayBody(io.NopCloser(bytes.NewReader(big)))
	r1, _ := b.reader()
	got, err := io.ReadAll(r1)
	if err != nil || len(got) != len(big) {
		t.Fatalf("first attempt read %d bytes, %v; want the whole %d", len(got), err, len(big))
	}
	if b.replayable() {
		t.Error("a body over the limit is still replayable")
	}
	if _, ok := b.reader(); ok {
		t.Error("a second attempt got a reader of an overflowed body")
	}
}
