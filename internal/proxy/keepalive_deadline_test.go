package proxy

import (
	"testing"
	"time"
)

func TestKeepAliveDeadline(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	lo, hi := now.Add(idleTimeout), now.Add(idleTimeout+idleSlack(idleTimeout))
	for _, tc := range []struct {
		name string
		cur  time.Time
		want time.Time
	}{
		{"no deadline yet", time.Time{}, hi},
		{"kept: at the low end", lo, lo},
		{"kept: inside the slack", lo.Add(10 * time.Second), lo.Add(10 * time.Second)},
		{"kept: at the high end", hi, hi},
		{"too early: a route timeout's deadline", now.Add(15 * time.Second), hi},
		{"too early: set a while ago", lo.Add(-time.Nanosecond), hi},
		{"too late: would keep an idle connection open too long", hi.Add(time.Nanosecond), hi},
	} {
		if got := keepAliveDeadline(now, tc.cur); !got.Equal(tc.want) {
			t.Errorf("%s: keepAliveDeadline(now, now%+v) = now%+v, want now%+v", tc.name, tc.cur.Sub(now), got.Sub(now), tc.want.Sub(now))
		}
	}
	// A busy keep-alive connection alternates between the stream idle
	// timeout (5 min by default, like idleTimeout) and the keep-alive wait:
	// neither moves the deadline until the slack is used up.
	dc := &downConn{streamIdle: idleTimeout}
	dl := keepAliveDeadline(now, time.Time{})
	moves := 0
	for i := range 1000 {
		at := now.Add(time.Duration(i) * 100 * time.Millisecond)
		if d := dc.streamDeadline(at, dl, time.Time{}); !d.Equal(dl) {
			dl, moves = d, moves+1
		}
		if d := keepAliveDeadline(at, dl); !d.Equal(dl) {
			dl, moves = d, moves+1
		}
	}
	// 100 s of requests, slack 37.5 s: a move every ~37.5 s.
	if moves < 1 || moves > 3 {
		t.Errorf("deadline moved %d times over 100 s of back-to-back requests, want 1–3", moves)
	}
}
