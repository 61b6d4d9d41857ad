package worker_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
	"github.com/mediasoup-server/mediasoup-server/worker"
)

// A worker whose start takes longer than mediasoup-go's one second (a busy
// machine) is abandoned by mediasoup-go with its process still running. The
// pool kills that process and starts another: one live worker, no process
// left behind, the abandoned start counted.
func TestStartTimeoutLeavesNoProcess(t *testing.T) {
	bin := testutil.WorkerBin(t)
	dir := t.TempDir()
	once := filepath.Join(dir, "slow-once")
	if err := os.WriteFile(once, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The real worker, started 3 s late the first time: mediasoup-go gives
	// up on it after 1 s, while it is still on its way.
	script := filepath.Join(dir, "mediasoup-worker")
	body := fmt.Sprintf("#!/bin/sh\nif rm %q 2>/dev/null; then sleep 3; fi\nexec %q \"$@\"\n", once, bin)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	before := worker.AbandonedStarts()
	pool, err := worker.New(worker.Options{Bin: script, Count: 1, RtcPort: testutil.FreePorts(t, 1), ListenIP: "127.0.0.1"})
	if err != nil {
		t.Fatalf("the pool did not start after a timed-out start: %v", err)
	}
	if n := worker.AbandonedStarts() - before; n != 1 {
		pool.Close()
		t.Fatalf("abandoned starts: %d, want 1", n)
	}
	live := pool.Workers()[0].Pid()
	if kids := children(); !slices.Equal(kids, []int{live}) {
		pool.Close()
		t.Fatalf("child processes %v, want only the live worker %d: the abandoned start's process was not killed", kids, live)
	}
	pool.Close()
	deadline := time.Now().Add(20 * time.Second)
	for len(children()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("processes left after Close: %v", children())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// children lists this process's child processes (any program).
func children() []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		var pid, ppid int
		var comm, state string
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if _, err := fmt.Sscanf(string(stat), "%d %s %s %d", &pid, &comm, &state, &ppid); err != nil {
			continue
		}
		if ppid == os.Getpid() && state != "Z" {
			out = append(out, pid)
		}
	}
	return out
}
