package cluster

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const metricsNamespace = "mediasoup_server"

// redisMetrics are the cluster's own metrics; signaling registers them
// (Collectors) on the server's registry.
type redisMetrics struct {
	rtt         prometheus.Histogram
	redisErrors prometheus.Counter
	links       *prometheus.GaugeVec   // side: edge|owner
	frames      *prometheus.CounterVec // dir: out|in
	relayErrors *prometheus.CounterVec // reason
}

func newRedisMetrics() *redisMetrics {
	return &redisMetrics{
		rtt: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "redis_rtt_seconds",
			Help:    "Round-trip time of the cluster's Redis commands (heartbeats, room placement).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		redisErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "redis_errors_total",
			Help: "Cluster Redis commands that failed (heartbeats, placement).",
		}),
		links: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "relayed_connections",
			Help: "Connections relayed through Redis, by side: edge (the client is here, its room elsewhere) or owner (the room is here, the client elsewhere).",
		}, []string{"side"}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "relay_frames_total",
			Help: "Relay messages (WebSocket frames and control) published (out) or received (in) over Redis.",
		}, []string{"dir"}),
		relayErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "relay_errors_total",
			Help: "Relayed connections broken, by reason: publish (a publish failed or nobody listened), gap (a message was lost), node_lost, subscriber (the node's subscription to Redis broke), dial_timeout.",
		}, []string{"reason"}),
	}
}

func (m *redisMetrics) observeRTT(d time.Duration) { m.rtt.Observe(d.Seconds()) }

// Collectors are the cluster's metrics, to register on the server's
// registry.
func (r *Redis) Collectors() []prometheus.Collector {
	m := r.met
	return []prometheus.Collector{m.rtt, m.redisErrors, m.links, m.frames, m.relayErrors}
}
