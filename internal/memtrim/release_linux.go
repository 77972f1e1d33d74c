package memtrim

import (
	"fmt"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Release collects garbage and returns free heap memory to the OS, then
// unmaps the executable's clean file pages from this process (see the
// package comment). Call it once, when start-up is over; calling it again
// is harmless but re-faults whatever is in use.
func Release() (Result, error) {
	var res Result
	before := heapReleased()
	debug.FreeOSMemory()
	res.HeapReleased = max(heapReleased()-before, 0)

	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return res, fmt.Errorf("executable path: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return res, fmt.Errorf("open smaps: %w", err)
	}
	maps, err := parseSmaps(f)
	_ = f.Close()
	if err != nil {
		return res, err
	}
	for _, m := range maps {
		if !m.releasable(exe) {
			continue
		}
		// The range is one of this process's own mappings, read from the
		// kernel a moment ago: it is not Go memory, and madvise only needs
		// its address and length.
		b := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), uintptr(m.start))), m.end-m.start)
		if err := unix.Madvise(b, unix.MADV_DONTNEED); err != nil {
			return res, fmt.Errorf("madvise %x-%x %s: %w", m.start, m.end, m.perms, err)
		}
		res.Mappings++
		res.MappedBytes += int64(m.end - m.start)
		res.FileResident += m.rss
	}
	return res, nil
}

// heapReleased is the heap memory the runtime has returned to the OS.
func heapReleased() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}
