package lb

import (
	"math"
	"slices"
	"strconv"
)

// ringEntry is one point of a hash ring.
type ringEntry struct {
	hash uint64
	host uint32 // index into the host set
}

// buildRing builds Envoy's ketama-style ring: every host gets
// ceil(min_ring_size / hosts) points (all hosts weigh the same), capped by
// max_ring_size, each point hashed from "address_i" with xxHash64. Only the
// points of an added or removed host change, so about 1/N of the keys move.
func buildRing[H Host](hosts []H, minSize, maxSize uint64) []ringEntry {
	n := len(hosts)
	if n == 0 {
		return nil
	}
	// Envoy: scale so that the least weighted host gets a whole number of
	// points, then walk running sums so fractional shares stay stable.
	weight := 1 / float64(n)
	scale := math.Min(math.Ceil(weight*float64(minSize))/weight, float64(maxSize))
	ring := make([]ringEntry, 0, int(math.Ceil(scale)))
	var current, target float64
	buf := make([]byte, 0, 64)
	for i, h := range hosts {
		target += scale * weight
		addr := h.Address()
		for j := uint64(0); current < target; j++ {
			buf = append(append(buf[:0], addr...), '_')
			buf = strconv.AppendUint(buf, j, 10)
			ring = append(ring, ringEntry{hash: Sum64(buf), host: uint32(i)})
			current++
		}
	}
	slices.SortFunc(ring, func(a, b ringEntry) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return int(a.host) - int(b.host)
	})
	return ring
}

// ringIndex returns the index of the first point at or after h, wrapping
// around, moved attempt points further for host selection retries (as
// Envoy: "behave as if this host was not in the ring").
func ringIndex(ring []ringEntry, h uint64, attempt uint32) int {
	lo, hi := 0, len(ring)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if ring[mid].hash < h {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return (lo + int(attempt)) % len(ring)
}
