package memtrim

import (
	"strings"
	"testing"
)

const sampleSmaps = `00400000-00b10000 r-xp 00000000 08:01 1234                               /usr/bin/trellis
Size:               7232 kB
Rss:                6144 kB
Pss:                1024 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me dw sd
00b10000-01200000 r--p 00710000 08:01 1234                               /usr/bin/trellis
Size:               7104 kB
Rss:                5120 kB
Anonymous:             0 kB
01200000-01300000 rw-p 00e00000 08:01 1234                               /usr/bin/trellis
Rss:                1024 kB
Anonymous:           512 kB
01300000-01310000 r--p 00f00000 08:01 1234                               /usr/bin/trellis
Rss:                  64 kB
Anonymous:            64 kB
c000000000-c000400000 rw-p 00000000 00:00 0 
Rss:                4096 kB
Anonymous:          4096 kB
7f0000000000-7f0000010000 r-xp 00000000 08:01 99                         /usr/lib/libc.so.6
Rss:                  64 kB
Anonymous:             0 kB
7f1000000000-7f1000001000 r-xp 00000000 08:01 1235                       /srv/my bin/trellis (deleted)
Rss:                   4 kB
Anonymous:             0 kB
`

func TestParseSmaps(t *testing.T) {
	maps, err := parseSmaps(strings.NewReader(sampleSmaps))
	if err != nil {
		t.Fatal(err)
	}
	want := []mapping{
		{0x400000, 0xb10000, "r-xp", "/usr/bin/trellis", 6144 << 10, 0},
		{0xb10000, 0x1200000, "r--p", "/usr/bin/trellis", 5120 << 10, 0},
		{0x1200000, 0x1300000, "rw-p", "/usr/bin/trellis", 1024 << 10, 512 << 10},
		{0x1300000, 0x1310000, "r--p", "/usr/bin/trellis", 64 << 10, 64 << 10},
		{0xc000000000, 0xc000400000, "rw-p", "", 4096 << 10, 4096 << 10},
		{0x7f0000000000, 0x7f0000010000, "r-xp", "/usr/lib/libc.so.6", 64 << 10, 0},
		{0x7f1000000000, 0x7f1000001000, "r-xp", "/srv/my bin/trellis (deleted)", 4 << 10, 0},
	}
	if len(maps) != len(want) {
		t.Fatalf("got %d mappings, want %d: %+v", len(maps), len(want), maps)
	}
	for i := range want {
		if maps[i] != want[i] {
			t.Errorf("mapping %d = %+v, want %+v", i, maps[i], want[i])
		}
	}
}

func TestReleasable(t *testing.T) {
	maps, err := parseSmaps(strings.NewReader(sampleSmaps))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		exe  string
		want []bool // per mapping of sampleSmaps
	}{
		// text and rodata: yes; the data segment (writable) and a relocated
		// read-only segment (anonymous pages) no; not other files or the heap.
		{"/usr/bin/trellis", []bool{true, true, false, false, false, false, false}},
		{"/srv/my bin/trellis (deleted)", []bool{false, false, false, false, false, false, true}},
		{"", []bool{false, false, false, false, false, false, false}},
	}
	for _, tt := range tests {
		for i, m := range maps {
			if got := m.releasable(tt.exe); got != tt.want[i] {
				t.Errorf("exe %q, mapping %d (%s %s): releasable %v, want %v", tt.exe, i, m.perms, m.path, got, tt.want[i])
			}
		}
	}
}

func TestParseSmapsErrors(t *testing.T) {
	tests := map[string]string{
		"field first":    "Rss: 4 kB\n",
		"bad range":      "zz-01 r-xp 0 0:0 0 /x\n",
		"reversed range": "02-01 r-xp 0 0:0 0 /x\n",
		"short header":   "00-01 r-xp 0\n",
		"bad perms":      "00-01 rx 0 0:0 0 /x\n",
		"bad unit":       "00-01 r-xp 0 0:0 0 /x\nRss: 4 MB\n",
		"negative":       "00-01 r-xp 0 0:0 0 /x\nAnonymous: -4 kB\n",
		"not a number":   "00-01 r-xp 0 0:0 0 /x\nRss: many kB\n",
	}
	for name, in := range tests {
		if _, err := parseSmaps(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error for %q", name, in)
		}
	}
}

func FuzzParseSmaps(f *testing.F) {
	f.Add(sampleSmaps)
	f.Add("00-01 r-xp 0 0:0 0\nRss: 0 kB\n")
	f.Fuzz(func(t *testing.T, in string) {
		maps, err := parseSmaps(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, m := range maps {
			if m.end < m.start || len(m.perms) != 4 || m.rss < 0 || m.anonymous < 0 {
				t.Fatalf("accepted an impossible mapping %+v from %q", m, in)
			}
		}
	})
}
