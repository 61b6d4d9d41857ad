package cluster

// crash stops the node as a kill would: no lease released, no record
// removed, links dropped without a word.
func (r *Redis) crash() {
	r.cancel()
	r.rl.mu.Lock()
	ps := r.rl.ps
	r.rl.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
	r.wg.Wait()
	_ = r.rdb.Close()
}
