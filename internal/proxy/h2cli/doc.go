// Package h2cli is the sidecar's HTTP/2 client: its connections to the
// endpoints of an upstream cluster and the per-cluster pool that shares
// them, an http.RoundTripper for the proxy's retry loop and ReverseProxy
// (docs/adr/003-http2-engine.md).
//
//	RoundTrip (caller's goroutine)
//	    │  Pool.get: a stream slot on the oldest connection to req.URL.Host
//	    │  with room; else wait for one, and for the endpoint's single dial
//	    ▼
//	┌─ conn ──────────────────────────────────────────────────────────────┐
//	│ write side: frames into one buffer under wmu; the last writer out   │
//	│   flushes (group commit), so concurrent streams share writes        │
//	│   • HEADERS, and a body already in memory, on the caller's goroutine│
//	│   • a streamed body: writeBody goroutine, flow-controlled           │
//	│   • ACKs, WINDOW_UPDATE, RST_STREAM: queued, written by whoever     │
//	│     holds the lock next (the read loop never waits for it)          │
//	│ read loop (one goroutine): frames → streams                         │
//	│   • response HEADERS → the waiting RoundTrip (one hand-off)          │
//	│   • DATA → the stream's buffer → Body.Read (WINDOW_UPDATE batched)   │
//	│   • trailers → res.Trailer before io.EOF                             │
//	│   • SETTINGS, PING, GOAWAY, RST_STREAM, WINDOW_UPDATE               │
//	└─────────────────────────────────────────────────────────────────────┘
//
// Connections honour the server's SETTINGS, retire after
// max_requests_per_connection requests or max_connection_duration
// (Envoy's semantics: no new stream, close after the last), close when
// idle, and send a keepalive PING when nothing was read for a while.
// Dialing, TLS and certificate expiry belong to Options.Dial.
package h2cli
