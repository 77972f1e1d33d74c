package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
)

const (
	readBufSize  = 16 << 10
	writeBufSize = 16 << 10
	// maxChunkLine bounds a chunk-size line (size plus extensions).
	maxChunkLine = 4 << 10
	// maxUpstreamHead bounds an upstream response head.
	maxUpstreamHead = 64 << 10
)

// bufferPools recycles the per-connection read and write buffers of the
// HTTP/1 fast path across connections (both hops).
type bufferPools struct {
	read  sync.Pool // *[]byte of readBufSize
	write sync.Pool // *bufio.Writer of writeBufSize
}

func (b *bufferPools) getRead() []byte {
	if p, ok := b.read.Get().(*[]byte); ok {
		return *p
	}
	return make([]byte, readBufSize)
}

func (b *bufferPools) putRead(buf []byte) {
	if cap(buf) != readBufSize {
		return // grown for a large head: let it go
	}
	buf = buf[:readBufSize]
	b.read.Put(&buf)
}

func (b *bufferPools) getWriter(w io.Writer) *bufio.Writer {
	if bw, ok := b.write.Get().(*bufio.Writer); ok {
		bw.Reset(w)
		return bw
	}
	return bufio.NewWriterSize(w, writeBufSize)
}

func (b *bufferPools) putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	b.write.Put(bw)
}

// peerWriteError is a failed flush of the other hop's writer, done by a
// reader before it blocks.
type peerWriteError struct{ err error }

func (e *peerWriteError) Error() string { return "write: " + e.err.Error() }
func (e *peerWriteError) Unwrap() error { return e.err }

var (
	errChunk      = errors.New("malformed chunked body")
	errBufferFull = errors.New("read buffer full")
)

// connReader is the read side of one connection: a buffer that message heads
// are parsed in place from and bodies are copied through.
type connReader struct {
	rd   io.Reader
	buf  []byte
	r, w int
	// flushFirst, when set, is flushed before every blocking read: the
	// message copied so far leaves in one write, and streamed bodies flow.
	flushFirst *bufio.Writer
	// onHeadWait, when set, runs once per head that is not complete in the
	// buffer, before blocking for the rest of it.
	onHeadWait func()
	// beforeRead, when set, runs before every read (and the flushFirst
	// flush): the stream idle timeout pushes deadlines (streamidle.go).
	beforeRead func()
}

func (b *connReader) buffered() []byte { return b.buf[b.r:b.w] }

// fill reads once from the connection, after making room.
func (b *connReader) fill() error {
	if b.beforeRead != nil {
		b.beforeRead()
	}
	if b.flushFirst != nil && b.flushFirst.Buffered() > 0 {
		if err := b.flushFirst.Flush(); err != nil {
			return &peerWriteError{err}
		}
	}
	if b.r == b.w {
		b.r, b.w = 0, 0
	} else if b.w == len(b.buf) && b.r > 0 {
		b.w = copy(b.buf, b.buf[b.r:b.w])
		b.r = 0
	}
	if b.w == len(b.buf) {
		return errBufferFull
	}
	n, err := b.rd.Read(b.buf[b.w:])
	b.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		return io.ErrNoProgress
	}
	return err
}

// readHead reads until a complete message head is buffered and returns its
// length; the head starts at b.r. Leading empty lines are skipped (RFC 9112
// 2.2).
func (b *connReader) readHead(lineLimit, limit int) (int, error) {
	scanned := 0
	waited := false
	for {
		for b.w-b.r >= 2 && b.buf[b.r] == '\r' && b.buf[b.r+1] == '\n' {
			b.r += 2
		}
		if b.w > b.r {
			n, err := headEnd(b.buf[b.r:b.w], &scanned, lineLimit, limit)
			if err != errNeedMore {
				return n, err
			}
		}
		if b.w == len(b.buf) && b.r == 0 && len(b.buf) < limit+2 {
			grown := make([]byte, limit+2)
			b.w = copy(grown, b.buf[:b.w])
			b.buf = grown // not pooled again: putRead drops odd sizes
		}
		if !waited && b.onHeadWait != nil {
			b.onHeadWait()
			waited = true
		}
		if err := b.fill(); err != nil {
			if errors.Is(err, errBufferFull) {
				return 0, errHeadersTooLarge
			}
			return 0, err
		}
	}
}

// readLine returns the next CRLF-terminated line without its CRLF.
func (b *connReader) readLine(limit int) ([]byte, error) {
	for {
		buf := b.buf[b.r:b.w]
		for i, c := range buf {
			if c == '\n' {
				if i == 0 || buf[i-1] != '\r' {
					return nil, errChunk
				}
				b.r += i + 1
				return buf[:i-1], nil
			}
		}
		if len(buf) > limit {
			return nil, errChunk
		}
		if err := b.fill(); err != nil {
			return nil, err
		}
	}
}

// copyFixed copies n body bytes from src to dst.
func copyFixed(dst *bufio.Writer, src *connReader, n int64) error {
	for n > 0 {
		if src.r == src.w {
			if err := src.fill(); err != nil {
				if errors.Is(err, io.EOF) {
					return io.ErrUnexpectedEOF
				}
				return err
			}
		}
		chunk := src.buf[src.r:src.w]
		if int64(len(chunk)) > n {
			chunk = chunk[:n]
		}
		if _, err := dst.Write(chunk); err != nil {
			return &peerWriteError{err}
		}
		src.r += len(chunk)
		n -= int64(len(chunk))
	}
	return nil
}

// copyChunked copies a chunked body with its trailers, re-framing each chunk
// (extensions are dropped) and checking the framing strictly.
func copyChunked(dst *bufio.Writer, src *connReader) error {
	for {
		line, err := src.readLine(maxChunkLine)
		if err != nil {
			return eofIsUnexpected(err)
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return errChunk
		}
		if err := writeChunkHeader(dst, size); err != nil {
			return err
		}
		if size == 0 {
			return copyTrailers(dst, src)
		}
		if err := copyFixed(dst, src, size); err != nil {
			return err
		}
		line, err = src.readLine(maxChunkLine)
		if err != nil {
			return eofIsUnexpected(err)
		}
		if len(line) != 0 {
			return errChunk
		}
		if _, err := dst.WriteString("\r\n"); err != nil {
			return &peerWriteError{err}
		}
	}
}

// copyTrailers copies the trailer section after the last chunk, each line
// checked and the section bounded by maxHeaderBytes; with dst nil it only
// reads and checks it (the buffer filter drops trailers).
func copyTrailers(dst *bufio.Writer, src *connReader) error {
	total := 0
	for {
		line, err := src.readLine(maxHeaderBytes)
		if err != nil {
			return eofIsUnexpected(err)
		}
		total += len(line) + 2
		if total > maxHeaderBytes {
			return errChunk
		}
		if len(line) > 0 && !validFieldLine(line) {
			return errChunk
		}
		if dst == nil {
			if len(line) == 0 {
				return nil
			}
			continue
		}
		if _, err := dst.Write(line); err != nil {
			return &peerWriteError{err}
		}
		if _, err := dst.WriteString("\r\n"); err != nil {
			return &peerWriteError{err}
		}
		if len(line) == 0 {
			return nil
		}
	}
}

// copyUntilEOF copies a body delimited by the end of the connection,
// as chunks when chunked (so the downstream connection can be kept).
func copyUntilEOF(dst *bufio.Writer, src *connReader, chunked bool) error {
	for {
		if src.r == src.w {
			err := src.fill()
			if errors.Is(err, io.EOF) {
				if chunked {
					if _, err := dst.WriteString("0\r\n\r\n"); err != nil {
						return &peerWriteError{err}
					}
				}
				return nil
			}
			if err != nil {
				return err
			}
		}
		chunk := src.buf[src.r:src.w]
		if chunked {
			if err := writeChunkHeader(dst, int64(len(chunk))); err != nil {
				return err
			}
		}
		if _, err := dst.Write(chunk); err != nil {
			return &peerWriteError{err}
		}
		src.r = src.w
		if chunked {
			if _, err := dst.WriteString("\r\n"); err != nil {
				return &peerWriteError{err}
			}
		}
	}
}

func writeChunkHeader(dst *bufio.Writer, size int64) error {
	if dst.Available() < 24 {
		if err := dst.Flush(); err != nil {
			return &peerWriteError{err}
		}
	}
	b := strconv.AppendInt(dst.AvailableBuffer(), size, 16)
	b = append(b, '\r', '\n')
	if _, err := dst.Write(b); err != nil {
		return &peerWriteError{err}
	}
	return nil
}

// parseChunkSize parses "HEX[;ext]". Extensions are checked loosely and dropped.
func parseChunkSize(line []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		if i >= 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
ext:
	if i == 0 {
		return 0, false
	}
	rest := trimOWS(line[i:])
	if len(rest) > 0 && rest[0] != ';' {
		return 0, false
	}
	for _, c := range rest {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return 0, false
		}
	}
	return n, true
}

// validFieldLine checks a trailer field line like a header line: a token
// name, a colon, and a value without control characters (a NUL in a
// trailer would reach the app otherwise).
func validFieldLine(line []byte) bool {
	if line[0] == ' ' || line[0] == '\t' {
		return false
	}
	for i, c := range line {
		if c == ':' {
			return i > 0 && validFieldValue(line[i+1:])
		}
		if !isTokenChar(c) {
			return false
		}
	}
	return false
}

func eofIsUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("chunked body: %w", io.ErrUnexpectedEOF)
	}
	return err
}
