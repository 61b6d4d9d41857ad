package main

import (
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"sort"
	"strings"

	"github.com/mediasoup-server/mediasoup-server/cluster"
	"github.com/mediasoup-server/mediasoup-server/room"
	"github.com/mediasoup-server/mediasoup-server/worker"
)

// defaultNodeID is the hostname plus a random suffix: two processes on one
// host (or a restarted one) never share an id.
func defaultNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "node"
	}
	host = strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, host)
	if len(host) > 50 {
		host = host[:50]
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}

// nodeStats reports this node's load and the rooms it holds.
func nodeStats(rooms *room.Manager, pool *worker.Pool) cluster.Stats {
	return func() (cluster.Load, []string) {
		var l cluster.Load
		var ids []string
		for _, r := range rooms.Rooms() {
			ids = append(ids, r.ID())
			for _, p := range r.Snapshot() {
				l.Peers++
				l.Consumers += p.Counts.Consumers + p.Counts.DataConsumers
			}
		}
		l.Rooms = len(ids)
		for _, in := range pool.Infos() {
			if in.State == worker.StateAlive {
				l.WorkersAlive++
			}
		}
		sort.Strings(ids)
		return l, ids
	}
}

// redactURL hides a Redis URL's password for the log.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable)"
	}
	return p.Redacted()
}
