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

// fakeBuffered is a caller's body that says what it holds (as h2srv's).
type fakeBuffered struct {
	io.Reader
	n        int
	complete bool
}

func (b *fakeBuffered) Close() error          { return nil }
func (b *fakeBuffered) Buffered() (int, bool) { return b.n, b.complete }

// TestReplayReaderBuffered: an attempt's reader reports what it holds (the
// recording still to replay plus the caller's buffered bytes), complete
// only when the rest of the caller's body is at hand.
func TestReplayReaderBuffered(t *testing.T) {
	type bufferedBody interface{ Buffered() (int, bool) }
	check := func(t *testing.T, r io.Reader, n int, complete bool) {
		t.Helper()
		gn, gc := r.(bufferedBody).Buffered()
		if gn != n || gc != complete {
			t.Errorf("Buffered() = %d, %v, want %d, %v", gn, gc, n, complete)
		}
	}
	t.Run("caller body complete", func(t *testing.T) {
		b := newReplayBody(&fakeBuffered{Reader: strings.NewReader("hello"), n: 5, complete: true})
		r, _ := b.reader()
		check(t, r, 5, true)
	})
	t.Run("caller body still arriving", func(t *testing.T) {
		b := newReplayBody(&fakeBuffered{Reader: strings.NewReader("hel"), n: 3})
		r, _ := b.reader()
		check(t, r, 3, false)
	})
	t.Run("caller body cannot tell", func(t *testing.T) {
		b := newReplayBody(io.NopCloser(strings.NewReader("hello")))
		r, _ := b.reader()
		check(t, r, 0, false)
	})
	t.Run("replay of a body read to its end", func(t *testing.T) {
		b := newReplayBody(io.NopCloser(strings.NewReader("hello")))
		r1, _ := b.reader()
		if _, err := io.ReadAll(r1); err != nil {
			t.Fatal(err)
		}
		check(t, r1, 0, true) // at its end
		r2, _ := b.reader()
		check(t, r2, 5, true)
		check(t, r1, 0, false) // abandoned
		buf := make([]byte, 2)
		if _, err := r2.Read(buf); err != nil {
			t.Fatal(err)
		}
		check(t, r2, 3, true)
		_ = r2.(io.Closer).Close()
		check(t, r2, 0, false)
	})
	t.Run("replay of a partly read body", func(t *testing.T) {
		src := &fakeBuffered{Reader: strings.NewReader("hello"), n: 5}
		b := newReplayBody(src)
		r1, _ := b.reader()
		buf := make([]byte, 2)
		if n, err := r1.Read(buf); n != 2 || err != nil {
			t.Fatalf("read %d, %v", n, err)
		}
		src.n, src.complete = 3, true
		r2, _ := b.reader()
		check(t, r2, 5, true) // 2 recorded, 3 at the caller
	})
}
