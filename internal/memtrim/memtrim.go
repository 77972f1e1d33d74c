// Package memtrim gives back, once, the memory a long-running process
// touched only to start: the garbage of initialisation and first
// configuration, and the pages of its own executable that start-up read.
//
// Why the executable's pages: a Go binary's package initialisation runs code
// and reads data spread over most of its text and read-only data segments,
// and the kernel maps file pages 64 KiB at a time around each fault. A
// sidecar that has started has most of a 40 MB binary resident in its
// address space although it will never run most of that code again
// (docs/perf.md, "Sidecar memory"). Those pages are clean and file-backed:
// advising the kernel that this process no longer needs them
// (madvise MADV_DONTNEED) unmaps them from this process only. They stay in
// the page cache for every other process mapping the binary, the kernel may
// reclaim them once nobody maps them, and any page this process touches
// again is mapped again by a minor fault from the page cache.
//
// Only mappings that cannot hold private data are advised: the executable's
// read-only and read-execute segments with no anonymous (copy-on-write)
// pages. A relocated read-only segment of a position-independent build, or
// a page a debugger patched, has anonymous pages and is left alone, since
// dropping it would lose the modification.
package memtrim

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Result is what Release did.
type Result struct {
	Mappings     int   // executable mappings advised
	MappedBytes  int64 // their size
	FileResident int64 // bytes of them resident before, now unmapped from this process
	HeapReleased int64 // heap bytes the runtime returned to the OS (runtime/debug.FreeOSMemory)
}

// mapping is one entry of /proc/PID/smaps.
type mapping struct {
	start, end uint64
	perms      string // "r-xp"
	path       string // "" for anonymous mappings
	rss        int64  // bytes resident
	anonymous  int64  // bytes of private (copy-on-write or anonymous) pages
}

// releasable reports whether m is a segment of the executable exe whose
// pages are all clean copies of the file.
func (m mapping) releasable(exe string) bool {
	return m.path == exe && exe != "" && m.end > m.start &&
		!strings.ContainsRune(m.perms, 'w') && m.anonymous == 0
}

// parseSmaps reads /proc/PID/smaps: a header line per mapping
// ("start-end perms offset dev inode [path]") followed by "Key: value kB"
// lines. Only the fields releasable needs are kept.
func parseSmaps(r io.Reader) ([]mapping, error) {
	var out []mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		key, val, isField := strings.Cut(text, ":")
		if isField && !strings.ContainsAny(key, " -") {
			if len(out) == 0 {
				return nil, fmt.Errorf("smaps line %d: field %q before any mapping", line, key)
			}
			m := &out[len(out)-1]
			switch key {
			case "Rss", "Anonymous":
				n, err := parseKB(val)
				if err != nil {
					return nil, fmt.Errorf("smaps line %d: %s: %w", line, key, err)
				}
				if key == "Rss" {
					m.rss = n
				} else {
					m.anonymous = n
				}
			}
			continue
		}
		m, err := parseHeader(text)
		if err != nil {
			return nil, fmt.Errorf("smaps line %d: %w", line, err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("smaps: %w", err)
	}
	return out, nil
}

// parseHeader parses "55d0c0a00000-55d0c0b00000 r-xp 00000000 08:01 1234   /usr/bin/x".
// The path is everything after the inode, and may contain spaces
// ("/path/to/bin (deleted)").
func parseHeader(s string) (mapping, error) {
	rest := s
	var fields [5]string
	for i := range fields {
		rest = strings.TrimLeft(rest, " ")
		f, r, _ := strings.Cut(rest, " ")
		if f == "" {
			return mapping{}, fmt.Errorf("mapping header %q: want address, perms, offset, device, inode", s)
		}
		fields[i], rest = f, r
	}
	lo, hi, ok := strings.Cut(fields[0], "-")
	if !ok {
		return mapping{}, fmt.Errorf("mapping header %q: address range %q", s, fields[0])
	}
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || end < start {
		return mapping{}, fmt.Errorf("mapping header %q: address range %q", s, fields[0])
	}
	if len(fields[1]) != 4 {
		return mapping{}, fmt.Errorf("mapping header %q: permissions %q", s, fields[1])
	}
	return mapping{start: start, end: end, perms: fields[1], path: strings.TrimLeft(rest, " ")}, nil
}

// parseKB parses " 1234 kB" into bytes.
func parseKB(s string) (int64, error) {
	num, unit, _ := strings.Cut(strings.TrimSpace(s), " ")
	if unit != "kB" {
		return 0, fmt.Errorf("value %q: want N kB", strings.TrimSpace(s))
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("value %q: want N kB", strings.TrimSpace(s))
	}
	return n << 10, nil
}
