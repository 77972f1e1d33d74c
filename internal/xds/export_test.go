package xds

// Pushes returns how many responses of typeURL were sent to node, for tests.
func (s *Server) Pushes(node, typeURL string) int {
	s.tracker.mu.Lock()
	defer s.tracker.mu.Unlock()
	if n, ok := s.tracker.nodes[node]; ok {
		return n.pushes[typeURL]
	}
	return 0
}
