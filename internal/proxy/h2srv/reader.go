package h2srv

import (
	"bufio"
	"errors"
	"time"

	"golang.org/x/net/http2"
)

// Errors that end a connection as abusive (GOAWAY ENHANCE_YOUR_CALM).
var (
	errControlFlood      = errors.New("h2srv: too many frames that do no work")
	errContinuationFlood = errors.New("h2srv: header block split into too many CONTINUATION frames")
)

// ctlBudget is the allowance of frames that do no work (see the package
// doc): a token bucket of burst tokens, refilled by perSecond, and earned
// by streams opened and DATA frames sent.
type ctlBudget struct {
	burst     float64
	perSecond float64
	perStream float64
	perData   float64
}

var defaultCtlBudget = ctlBudget{burst: 1000, perSecond: 100, perStream: 10, perData: 10}

// frameReader is the Framer's reader: it passes the bytes of the buffered
// connection through and parses every frame header on the way, before x/net
// does anything with the frame (x/net reads a whole header block, HEADERS
// and its CONTINUATION frames, inside one ReadFrame call). It spends the
// connection's frame budget and bounds CONTINUATION frames per block.
// Only the read loop uses it.
type frameReader struct {
	br  *bufio.Reader
	err error // the last error of the connection itself (not of parsing)

	lastType http2.FrameType // of the last frame other than CONTINUATION

	hdr    [9]byte
	hdrN   int
	remain uint32 // payload bytes of the current frame still to pass

	inBlock          bool // a header block without END_HEADERS is open
	continuations    int
	maxContinuations int

	budget     ctlBudget
	tokens     float64
	last       time.Time
	streams    uint64 // streams opened (read loop), as of the last refill
	seenData   uint64 // c.w.dataSent as of the last refill
	dataSent   func() uint64
	streamsNow uint64
}

func (r *frameReader) init(br *bufio.Reader, b ctlBudget, maxCont int, dataSent func() uint64) {
	r.br, r.budget, r.maxContinuations, r.dataSent = br, b, maxCont, dataSent
	r.tokens = b.burst
	r.last = time.Now()
}

func (r *frameReader) Read(p []byte) (int, error) {
	n, err := r.br.Read(p)
	if err != nil {
		r.err = err
	}
	for b := p[:n]; len(b) > 0; {
		if r.remain > 0 {
			k := min(uint32(len(b)), r.remain)
			r.remain -= k
			b = b[k:]
			continue
		}
		k := copy(r.hdr[r.hdrN:], b)
		r.hdrN += k
		b = b[k:]
		if r.hdrN < len(r.hdr) {
			continue
		}
		r.hdrN = 0
		r.remain = uint32(r.hdr[0])<<16 | uint32(r.hdr[1])<<8 | uint32(r.hdr[2])
		if ferr := r.frame(http2.FrameType(r.hdr[3]), http2.Flags(r.hdr[4]), r.remain); ferr != nil {
			// The Framer ignores errors once it has the bytes it asked for.
			return 0, ferr
		}
	}
	return n, err
}

// frame looks at one frame header.
func (r *frameReader) frame(t http2.FrameType, f http2.Flags, length uint32) error {
	if t != http2.FrameContinuation {
		r.lastType = t
	}
	switch t {
	case http2.FrameHeaders:
		r.inBlock, r.continuations = !f.Has(http2.FlagHeadersEndHeaders), 0
		if length == 0 && r.inBlock {
			return r.spend()
		}
	case http2.FrameContinuation:
		if !r.inBlock {
			return nil // the Framer rejects it
		}
		r.inBlock = !f.Has(http2.FlagContinuationEndHeaders)
		if r.continuations++; r.continuations > r.maxContinuations {
			return errContinuationFlood
		}
		if length == 0 && r.inBlock {
			return r.spend()
		}
	case http2.FrameData:
		if length == 0 && !f.Has(http2.FlagDataEndStream) {
			return r.spend()
		}
	case http2.FramePing, http2.FrameSettings, http2.FrameWindowUpdate, http2.FramePriority, http2.FrameRSTStream:
		return r.spend()
	case http2.FrameGoAway, http2.FramePushPromise:
	default:
		return r.spend() // unknown types are ignored, but not for free
	}
	return nil
}

// spend takes one token for a frame that does no work.
func (r *frameReader) spend() error {
	if r.tokens < 1 {
		r.refill()
		if r.tokens < 1 {
			return errControlFlood
		}
	}
	r.tokens--
	return nil
}

// charge spends a token for work found out after parsing (a frame for a
// closed stream, a refused stream).
func (r *frameReader) charge() error { return r.spend() }

func (r *frameReader) refill() {
	now := time.Now()
	b := &r.budget
	t := r.tokens + b.perSecond*now.Sub(r.last).Seconds()
	t += b.perStream * float64(r.streamsNow-r.streams)
	ds := r.dataSent()
	t += b.perData * float64(ds-r.seenData)
	r.tokens = min(t, b.burst)
	r.last, r.streams, r.seenData = now, r.streamsNow, ds
}

// blocking reports whether the next frame is not yet wholly buffered, so
// reading it may wait for the network.
func (r *frameReader) blocking() bool {
	n := r.br.Buffered()
	if n < 9 {
		return true
	}
	h, _ := r.br.Peek(9)
	length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	return n < 9+length
}
