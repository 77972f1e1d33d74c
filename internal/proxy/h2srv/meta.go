package h2srv

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// metaReader assembles header blocks (HEADERS and its CONTINUATION
// frames) into a MetaHeadersFrame for the read loop. It is x/net's
// Framer.ReadMetaHeaders (readMetaFrame) with the same checks, limits and
// errors, on state the connection keeps: the decoder's emit function, the
// frame and its field list are reused block after block, where x/net
// allocates them (and a closure) for each.
//
// The frame returned is valid until the next read: the read loop is done
// with it by then (the strings of its fields are the decoder's, kept by
// the request).
type metaReader struct {
	fr      *http2.Framer
	dec     *hpack.Decoder
	maxList uint32 // SETTINGS_MAX_HEADER_LIST_SIZE we advertise

	mh     http2.MetaHeadersFrame
	fields []hpack.HeaderField // mh.Fields' array, kept across blocks

	// the block being decoded
	headersRemain  uint32
	trailersRemain uint32
	sawRegular     bool
	invalid        error
}

func (m *metaReader) init(fr *http2.Framer, maxList uint32) {
	m.fr, m.maxList = fr, maxList
	m.dec = hpack.NewDecoder(4096, m.emit)
	m.dec.SetMaxStringLength(int(maxList))
}

// Errors of invalid fields (x/net's, same texts).
var (
	errPseudoAfterRegular   = errors.New("pseudo header field after regular")
	errMixPseudoHeaderTypes = errors.New("mix of request and response pseudo headers")
)

type fieldNameError string

func (e fieldNameError) Error() string { return fmt.Sprintf("invalid header field name %q", string(e)) }

type fieldValueError string

func (e fieldValueError) Error() string {
	return fmt.Sprintf("invalid header field value for %q", string(e))
}

type pseudoHeaderError string

func (e pseudoHeaderError) Error() string {
	return fmt.Sprintf("invalid pseudo-header %q", string(e))
}

type duplicatePseudoError string

func (e duplicatePseudoError) Error() string {
	return fmt.Sprintf("duplicate pseudo-header %q", string(e))
}

// emit takes one decoded field (the decoder's emit function).
func (m *metaReader) emit(hf hpack.HeaderField) {
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		// Not the value in the error: it may be sensitive.
		m.invalid = fieldValueError(hf.Name)
	}
	if strings.HasPrefix(hf.Name, ":") {
		if m.sawRegular {
			m.invalid = errPseudoAfterRegular
		}
	} else {
		m.sawRegular = true
		if !validWireName(hf.Name) {
			m.invalid = fieldNameError(hf.Name)
		}
	}
	if m.invalid != nil {
		m.dec.SetEmitEnabled(false)
		return
	}
	var remain *uint32
	var size uint32
	if hf.Name == "trailer" {
		// As x/net: each trailer named counts as a field of its own.
		remain = &m.trailersRemain
		n := strings.Count(hf.Value, ",") + 1
		size = uint32(len(hf.Value)-n+1) + uint32(n)*hpack.HeaderField{}.Size()
	} else {
		remain = &m.headersRemain
		size = hf.Size()
	}
	if size > *remain {
		m.dec.SetEmitEnabled(false)
		m.mh.Truncated = true
		m.headersRemain, m.trailersRemain = 0, 0
		return
	}
	*remain -= size
	m.mh.Fields = append(m.mh.Fields, hf)
}

// headerBlockFrame is a HEADERS or CONTINUATION frame.
type headerBlockFrame interface {
	HeaderBlockFragment() []byte
	HeadersEnded() bool
}

// read decodes the header block hf starts, reading its CONTINUATION frames.
func (m *metaReader) read(hf *http2.HeadersFrame) (http2.Frame, error) {
	mh := &m.mh
	*mh = http2.MetaHeadersFrame{HeadersFrame: hf, Fields: m.fields[:0]}
	m.headersRemain, m.trailersRemain = m.maxList, m.maxList
	m.sawRegular, m.invalid = false, nil
	m.dec.SetEmitEnabled(true)
	var hc headerBlockFrame = hf
	for {
		frag := hc.HeaderBlockFragment()
		// A block far over the limit is not decoded: the connection ends
		// (a fragment more than twice what is left, or any CONTINUATION
		// once over it), as after a CONTINUATION past an invalid field.
		if int64(len(frag)) > 2*int64(m.headersRemain+m.trailersRemain) || m.invalid != nil {
			return mh, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if _, err := m.dec.Write(frag); err != nil {
			return mh, http2.ConnectionError(http2.ErrCodeCompression)
		}
		if hc.HeadersEnded() {
			break
		}
		f, err := m.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		hc = f.(*http2.ContinuationFrame) // the Framer checks the order
	}
	m.fields = mh.Fields[:0]
	if err := m.dec.Close(); err != nil {
		return mh, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if m.invalid != nil {
		return nil, http2.StreamError{StreamID: hf.StreamID, Code: http2.ErrCodeProtocol, Cause: m.invalid}
	}
	if err := checkPseudos(mh.PseudoFields()); err != nil {
		return nil, http2.StreamError{StreamID: hf.StreamID, Code: http2.ErrCodeProtocol, Cause: err}
	}
	return mh, nil
}

// checkPseudos: known pseudo-header fields, none twice, not both of a
// request and of a response (x/net's MetaHeadersFrame.checkPseudos).
func checkPseudos(pf []hpack.HeaderField) error {
	var isRequest, isResponse bool
	for i, hf := range pf {
		switch hf.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			isRequest = true
		case ":status":
			isResponse = true
		default:
			return pseudoHeaderError(hf.Name)
		}
		for _, hf2 := range pf[:i] {
			if hf.Name == hf2.Name {
				return duplicatePseudoError(hf.Name)
			}
		}
	}
	if isRequest && isResponse {
		return errMixPseudoHeaderTypes
	}
	return nil
}

// readFrame is the read loop's Framer.ReadFrame, with header blocks
// assembled by the connection's metaReader.
func (c *conn) readFrame() (http2.Frame, error) {
	f, err := c.fr.ReadFrame()
	if hf, ok := f.(*http2.HeadersFrame); ok && err == nil {
		return c.meta.read(hf)
	}
	return f, err
}
