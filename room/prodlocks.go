package room

import "sync"

// producerLocks is one reader/writer lock per producer id (see
// Room.consuming): made on first use, dropped when its last user (holder or
// waiter) leaves, so the map holds only the ids locked or waited on now.
// Its own mutex, not the room's: it is lock bookkeeping, held only for a map
// access, and taken where the room's lock is not held.
type producerLocks struct {
	mu sync.Mutex
	m  map[string]*producerLock
}

type producerLock struct {
	sync.RWMutex
	users int // holders and waiters; guarded by producerLocks.mu
}

// get returns id's lock, counting the caller as a user until put.
func (l *producerLocks) get(id string) *producerLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	pl := l.m[id]
	if pl == nil {
		if l.m == nil {
			l.m = map[string]*producerLock{}
		}
		pl = &producerLock{}
		l.m[id] = pl
	}
	pl.users++
	return pl
}

// put ends a use of id's lock begun by get (the lock released by then).
func (l *producerLocks) put(id string, pl *producerLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if pl.users--; pl.users == 0 {
		delete(l.m, id)
	}
}
