package h2cli

import (
	"errors"
	"fmt"

	"golang.org/x/net/http2"
)

// StreamError ends one stream: the server reset it (Remote), or the client
// reset it because the server broke the protocol on it. Its message names
// the error code, so a REFUSED_STREAM reset reads "... REFUSED_STREAM".
type StreamError struct {
	StreamID uint32
	Code     http2.ErrCode
	Remote   bool  // the server sent the RST_STREAM
	Cause    error // why the client reset it (nil when Remote)
}

func (e *StreamError) Error() string {
	if e.Remote {
		return fmt.Sprintf("h2cli: stream %d reset by the server: %v", e.StreamID, e.Code)
	}
	return fmt.Sprintf("h2cli: stream %d reset: %v: %v", e.StreamID, e.Code, e.Cause)
}

func (e *StreamError) Unwrap() error { return e.Cause }

// GoAwayError fails a stream the server did not process: its id is above
// the last stream id of the server's GOAWAY. Like a REFUSED_STREAM reset,
// the request may be sent again; the message says REFUSED_STREAM so retry
// classifiers that match the code see it.
type GoAwayError struct {
	StreamID     uint32
	LastStreamID uint32
	Code         http2.ErrCode // the GOAWAY's
	Debug        string
}

func (e *GoAwayError) Error() string {
	msg := fmt.Sprintf("h2cli: stream %d not processed (REFUSED_STREAM): the server sent GOAWAY, last stream %d, %v",
		e.StreamID, e.LastStreamID, e.Code)
	if e.Debug != "" {
		msg += ": " + e.Debug
	}
	return msg
}

// IsRefused reports whether err says the server did not process the
// request: a REFUSED_STREAM reset, or a stream above a GOAWAY's last id.
func IsRefused(err error) bool {
	var se *StreamError
	if errors.As(err, &se) && se.Remote && se.Code == http2.ErrCodeRefusedStream {
		return true
	}
	var ge *GoAwayError
	return errors.As(err, &ge)
}

var (
	// ErrClosed: the pool was closed.
	ErrClosed = errors.New("h2cli: pool closed")

	// errNotSent: the connection became unusable between the reservation
	// of a stream and its HEADERS; nothing was written, so the pool sends
	// the request on another connection.
	errNotSent = errors.New("h2cli: connection unusable before the request was sent")

	errBodyClosed      = errors.New("h2cli: response body closed")
	errStopBody        = errors.New("h2cli: request body no longer wanted")
	errReqBodyTooLong  = errors.New("h2cli: request body longer than its Content-Length")
	errReqBodyTooShort = errors.New("h2cli: request body shorter than its Content-Length")
	errHeaderListSize  = errors.New("h2cli: response header list too large")
	errPingTimeout     = errors.New("h2cli: no PING acknowledgement: connection dead")
	errIdle            = errors.New("h2cli: connection idle")
	errDrained         = errors.New("h2cli: connection drained")
)

// connError is a failure of the whole connection, with the address.
type connError struct {
	addr string
	err  error
}

func (e *connError) Error() string { return fmt.Sprintf("h2cli: connection to %s: %v", e.addr, e.err) }
func (e *connError) Unwrap() error { return e.err }
