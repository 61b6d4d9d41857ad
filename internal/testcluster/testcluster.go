// Package testcluster runs in-process nodes of a cluster on one Redis for
// integration tests: each node a real worker pool, rooms, a signaling
// handler on a loopback listener, and a cluster.Redis placement.
package testcluster

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/cluster"
	"github.com/mediasoup-server/mediasoup-server/internal/testserver"
	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
	"github.com/mediasoup-server/mediasoup-server/room"
	"github.com/mediasoup-server/mediasoup-server/signaling"
	"github.com/mediasoup-server/mediasoup-server/worker"
	"go.uber.org/zap/zaptest"
)

// Heartbeats of the test nodes: a lost node is noticed in about 2 s.
const (
	HeartbeatInterval = 200 * time.Millisecond
	HeartbeatTTL      = 2 * time.Second
)

// Node is one in-process node.
type Node struct {
	ID      string
	Pool    *worker.Pool
	Rooms   *room.Manager
	Handler *signaling.Handler
	Cluster *cluster.Redis
	URL     string
	// Heavy makes the node report itself fully loaded: rooms are placed on
	// the other nodes while they are live.
	Heavy atomic.Bool
}

// Options adjust a node.
type Options struct {
	Workers int // default 1
	Room    func(*room.Options)
	Limits  func(*signaling.Limits)
}

// Start starts node id on the Redis at redisURL. At the end of the test it
// shuts down in the server's order, the cluster node last.
func Start(t testing.TB, redisURL, id string, o Options) *Node {
	t.Helper()
	if o.Workers == 0 {
		o.Workers = 1
	}
	log := zaptest.NewLogger(t).Named(id)
	n := &Node{ID: id}
	n.Pool = testserver.Pool(t, o.Workers, log)
	ropts := room.Options{Logger: log.Named("room"), ServerRequestTimeout: 30 * time.Second}
	if o.Room != nil {
		o.Room(&ropts)
	}
	n.Rooms = room.NewManager(n.Pool, ropts)
	var handler atomic.Pointer[signaling.Handler]
	c, err := cluster.NewRedis(cluster.RedisOptions{
		URL: redisURL, NodeID: id, Logger: log.Named("cluster"),
		Stats: n.stats,
		Draining: func() bool {
			h := handler.Load()
			return h != nil && h.Draining()
		},
		OnLost: func(roomID string) {
			if r := n.Rooms.Room(roomID); r != nil {
				r.Close(room.CloseWorkerDied, "room moved to another node")
			}
		},
		HeartbeatInterval: HeartbeatInterval, HeartbeatTTL: HeartbeatTTL,
	})
	if err != nil {
		t.Fatal(err)
	}
	n.Cluster = c
	t.Cleanup(c.Close) // after the server's own shutdown (cleanups run last first)
	limits := signaling.DefaultLimits()
	if o.Limits != nil {
		o.Limits(&limits)
	}
	n.Handler = signaling.NewHandler(signaling.Options{
		Workers: n.Pool, Rooms: n.Rooms, Limits: limits, Logger: log.Named("signaling"), Version: worker.Version,
		Placement: c,
	})
	handler.Store(n.Handler)
	n.URL = testserver.Serve(t, n.Pool, n.Rooms, n.Handler)
	testutil.Eventually(t, 30*time.Second, func() bool { return c.Ready() == nil }, "node %s not ready", id)
	return n
}

func (n *Node) stats() (cluster.Load, []string) {
	var l cluster.Load
	var ids []string
	for _, r := range n.Rooms.Rooms() {
		ids = append(ids, r.ID())
		l.Peers += len(r.Peers())
	}
	l.Rooms = len(ids)
	l.WorkersAlive = 1
	if n.Heavy.Load() {
		l.WorkersAlive = 0
	}
	slices.Sort(ids)
	return l, ids
}

// WaitSeeing waits until every node's view holds all of them.
func WaitSeeing(t testing.TB, nodes ...*Node) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() bool {
		for _, n := range nodes {
			if len(n.Cluster.LiveNodes()) < len(nodes) {
				return false
			}
		}
		return true
	}, "nodes do not see each other")
}

// Owner asks n's placement who owns roomID (claiming it if nobody does).
func (n *Node) Owner(t testing.TB, roomID string) cluster.Owner {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o, err := n.Cluster.Locate(ctx, roomID)
	if err != nil {
		t.Fatalf("%s: locate %s: %v", n.ID, roomID, err)
	}
	return o
}
