// Package syncutil holds small concurrency helpers shared by the packages.
package syncutil

import (
	"context"
	"sync"
)

// Wait blocks until wg's counter is zero or ctx ends, whichever is first.
func Wait(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
