package lb

const maglevEmpty = ^uint32(0)

// buildMaglev fills a Maglev lookup table of size entries (a prime): each
// host walks its own permutation (offset = xxHash64(address, seed 0) % size,
// skip = xxHash64(address, seed 1) % (size-1) + 1, as Envoy) and the hosts
// take turns claiming their next free entry, so every host owns an equal
// share of the table and few entries move when the host set changes.
func buildMaglev[H Host](hosts []H, size uint64) []uint32 {
	n := len(hosts)
	if n == 0 {
		return nil
	}
	table := make([]uint32, size)
	for i := range table {
		table[i] = maglevEmpty
	}
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	next := make([]uint64, n)
	for i, h := range hosts {
		addr := h.Address()
		offset[i] = Sum64Seed(addr, 0) % size
		skip[i] = Sum64Seed(addr, 1)%(size-1) + 1
	}
	for filled := uint64(0); filled < size; {
		for i := 0; i < n && filled < size; i++ {
			c := (offset[i] + skip[i]*next[i]) % size
			for table[c] != maglevEmpty {
				next[i]++
				c = (offset[i] + skip[i]*next[i]) % size
			}
			table[c] = uint32(i)
			next[i]++
			filled++
		}
	}
	return table
}
