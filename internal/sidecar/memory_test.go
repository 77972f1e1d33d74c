package sidecar

import (
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestResolveMemory(t *testing.T) {
	const off = math.MaxInt64
	tests := []struct {
		name    string
		flags   MemoryFlags
		env     map[string]string
		want    Memory
		wantErr string
	}{
		{name: "defaults",
			want: Memory{GCPercent: DefaultGCPercent, Limit: off, GCSource: "default", LimitSource: "default"}},
		{name: "flags win over the environment",
			flags: MemoryFlags{GCPercent: 80, SetGCPercent: true, Limit: "48MiB", SetLimit: true},
			env:   map[string]string{"GOGC": "200", "GOMEMLIMIT": "1GiB"},
			want:  Memory{GCPercent: 80, Limit: 48 << 20, GCSource: "flag", LimitSource: "flag"}},
		{name: "environment when no flag",
			env:  map[string]string{"GOGC": "150", "GOMEMLIMIT": "100000000"},
			want: Memory{GCPercent: 150, Limit: 100000000, GCSource: "environment", LimitSource: "environment"}},
		{name: "GOGC=off with a limit",
			env:  map[string]string{"GOGC": "off", "GOMEMLIMIT": "64MiB"},
			want: Memory{GCPercent: -1, Limit: 64 << 20, GCSource: "environment", LimitSource: "environment"}},
		{name: "flag off with a flag limit",
			flags: MemoryFlags{GCPercent: -1, SetGCPercent: true, Limit: "32MiB", SetLimit: true},
			want:  Memory{GCPercent: -1, Limit: 32 << 20, GCSource: "flag", LimitSource: "flag"}},
		{name: "limit flag off",
			flags: MemoryFlags{Limit: "off", SetLimit: true},
			env:   map[string]string{"GOMEMLIMIT": "64MiB"},
			want:  Memory{GCPercent: DefaultGCPercent, Limit: off, GCSource: "default", LimitSource: "flag"}},
		{name: "collector off without a limit",
			flags:   MemoryFlags{GCPercent: -1, SetGCPercent: true},
			wantErr: "without a memory limit"},
		{name: "GOGC=off without a limit",
			env:     map[string]string{"GOGC": "off"},
			wantErr: "without a memory limit"},
		{name: "zero percent",
			flags:   MemoryFlags{GCPercent: 0, SetGCPercent: true},
			wantErr: "--gc-percent: 0"},
		{name: "bad GOGC",
			env:     map[string]string{"GOGC": "lots"},
			wantErr: `GOGC="lots"`},
		{name: "bad limit flag",
			flags:   MemoryFlags{Limit: "64MB", SetLimit: true},
			wantErr: `--memory-limit: "64MB"`},
		{name: "bad GOMEMLIMIT",
			env:     map[string]string{"GOMEMLIMIT": "-1"},
			wantErr: `GOMEMLIMIT: "-1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveMemory(tt.flags, func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ResolveMemory (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "0", want: 0},
		{in: "1000", want: 1000},
		{in: "1000B", want: 1000},
		{in: "64KiB", want: 64 << 10},
		{in: "24MiB", want: 24 << 20},
		{in: " 2GiB ", want: 2 << 30},
		{in: "1TiB", want: 1 << 40},
		{in: "off", want: math.MaxInt64},
		{in: "", wantErr: true},
		{in: "MiB", wantErr: true},
		{in: "12MB", wantErr: true},
		{in: "1.5GiB", wantErr: true},
		{in: "-5MiB", wantErr: true},
		{in: "9999999TiB", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseByteSize(%q) error = %v, want error %t", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestFormatByteSize(t *testing.T) {
	for n, want := range map[int64]string{24 << 20: "24MiB", 1536 << 10: "1536KiB", 1000: "1000B", 3 << 30: "3GiB", 0: "0B"} {
		if got := FormatByteSize(n); got != want {
			t.Errorf("FormatByteSize(%d) = %q, want %q", n, got, want)
		}
		if back, err := ParseByteSize(FormatByteSize(n)); err != nil || back != n {
			t.Errorf("ParseByteSize(FormatByteSize(%d)) = %d, %v", n, back, err)
		}
	}
}
