package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
	"github.com/mediasoup-server/mediasoup-server/room"
	"github.com/mediasoup-server/mediasoup-server/worker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsNamespace prefixes every metric of the server.
const metricsNamespace = "mediasoup_server"

// resourceUsageTimeout bounds how long a scrape waits for a worker's
// getrusage() answer.
const resourceUsageTimeout = 2 * time.Second

// Optional abilities of Options.Workers (the *worker.Pool has both): the
// per-worker resource usage and the death notifications.
type workerList interface{ Workers() []*worker.Worker }
type deathNotifier interface {
	OnDeath(func(worker.Death)) (cancel func())
}
type requestNotifier interface {
	OnRequest(func(int, mediasoup.ChannelRequestStats)) (cancel func())
}

// metrics are the server's Prometheus metrics, on a registry of their own
// (not the global one), so that several servers can live in one process.
// Counts of rooms and what they hold are computed at scrape time from the
// room manager; requests, notifications and server requests are counted
// where they are sent or dispatched. A nil *metrics counts nothing.
type metrics struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec   // method, code
	requestDuration *prometheus.HistogramVec // method
	notifications   *prometheus.CounterVec   // method
	serverRequests  *prometheus.CounterVec   // method, result
	connections     prometheus.Gauge
	workerDeaths    *prometheus.CounterVec // worker
	// Requests to the workers (mediasoup-go's OnChannelRequest).
	workerRequestDuration *prometheus.HistogramVec // method
	workerRequestErrors   *prometheus.CounterVec   // method

	// The children of requests, requestDuration and notifications, looked
	// up once per label set (WithLabelValues hashes the labels each time:
	// a broadcast to 2,000 peers counts 2,000 notifications).
	children sync.Map // childKey → prometheus.Counter or prometheus.Observer
}

type childKey struct {
	vec    any
	method string
	code   int
}

// counter returns vec's child for method (and code, when vec has a code
// label), created on first use.
func (m *metrics) counter(vec *prometheus.CounterVec, method string, code int) prometheus.Counter {
	k := childKey{vec, method, code}
	if c, ok := m.children.Load(k); ok {
		return c.(prometheus.Counter)
	}
	var c prometheus.Counter
	if code != 0 {
		c = vec.WithLabelValues(method, strconv.Itoa(code))
	} else {
		c = vec.WithLabelValues(method)
	}
	m.children.Store(k, c)
	return c
}

func (m *metrics) observer(vec *prometheus.HistogramVec, method string) prometheus.Observer {
	k := childKey{vec, method, 0}
	if o, ok := m.children.Load(k); ok {
		return o.(prometheus.Observer)
	}
	o := vec.WithLabelValues(method)
	m.children.Store(k, o)
	return o
}

// knownMethods bounds the method label: anything else counts as "other".
var knownMethods = func() map[string]bool {
	m := map[string]bool{"leaveRoom": true}
	for k := range handlers {
		m[k] = true
	}
	return m
}()

func newMetrics(opts Options, draining func() bool) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Name: "requests_total",
		Help: "Client requests handled, by method and protocol response code (200 = ok).",
	}, []string{"method", "code"})
	m.requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace, Name: "request_duration_seconds",
		Help:    "Time to handle a client request, by method.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"method"})
	m.notifications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Name: "notifications_sent_total",
		Help: "Notifications queued to peers, by method.",
	}, []string{"method"})
	m.serverRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Name: "server_requests_total",
		Help: "Server-to-client requests (newConsumer, newDataConsumer), by method and result: ok, rejected, timeout, closed, error.",
	}, []string{"method", "result"})
	m.connections = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: metricsNamespace, Name: "websocket_connections",
		Help: "Open peer WebSocket connections.",
	})
	m.workerDeaths = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Name: "worker_deaths_total",
		Help: "Unexpected deaths of mediasoup worker processes, by worker index.",
	}, []string{"worker"})
	for _, in := range opts.Workers.Infos() {
		m.workerDeaths.WithLabelValues(strconv.Itoa(in.Index))
	}
	if dn, ok := opts.Workers.(deathNotifier); ok {
		dn.OnDeath(func(d worker.Death) { m.workerDeaths.WithLabelValues(strconv.Itoa(d.Index)).Inc() })
	}
	m.workerRequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace, Name: "worker_request_duration_seconds",
		Help:    "Round trip of a request to a mediasoup worker (serialization, pipes, answer), by method.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
	}, []string{"method"})
	m.workerRequestErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Name: "worker_request_errors_total",
		Help: "Requests to a mediasoup worker that failed (including not found, timeouts, and the worker going away), by method.",
	}, []string{"method"})
	if rn, ok := opts.Workers.(requestNotifier); ok {
		rn.OnRequest(func(_ int, s mediasoup.ChannelRequestStats) {
			m.workerRequestDuration.WithLabelValues(s.Method).Observe(s.Duration.Seconds())
			if s.Err != nil {
				m.workerRequestErrors.WithLabelValues(s.Method).Inc()
			}
		})
	}
	m.reg.MustRegister(m.requests, m.requestDuration, m.notifications, m.serverRequests, m.connections, m.workerDeaths,
		m.workerRequestDuration, m.workerRequestErrors,
		&workersCollector{workers: opts.Workers},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "draining",
			Help: "1 while the server drains (refuses new peers before shutting down).",
		}, func() float64 { return b2f(draining()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if opts.Rooms != nil {
		m.reg.MustRegister(&roomsCollector{rooms: opts.Rooms})
	}
	if c, ok := opts.Placement.(interface{ Collectors() []prometheus.Collector }); ok {
		m.reg.MustRegister(c.Collectors()...)
	}
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// handler serves the registry in the Prometheus text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

func (m *metrics) request(method string, code int, d time.Duration) {
	if m == nil {
		return
	}
	if !knownMethods[method] {
		method = "other"
	}
	m.counter(m.requests, method, code).Inc()
	m.observer(m.requestDuration, method).Observe(d.Seconds())
}

func (m *metrics) connOpened() {
	if m != nil {
		m.connections.Inc()
	}
}

func (m *metrics) connClosed() {
	if m != nil {
		m.connections.Dec()
	}
}

// peerConn counts what the rooms send through it to one peer.
type peerConn struct {
	*Conn
	m *metrics
}

func (c peerConn) Notify(method string, data any) error {
	err := c.Conn.Notify(method, data)
	if err == nil && c.m != nil {
		c.m.counter(c.m.notifications, method, 0).Inc()
	}
	return err
}

func (c peerConn) NotifyShared(n *room.Notification) error {
	err := c.Conn.NotifyShared(n)
	if err == nil && c.m != nil {
		c.m.counter(c.m.notifications, n.Method, 0).Inc()
	}
	return err
}

func (c peerConn) Request(ctx context.Context, method string, data any) (json.RawMessage, error) {
	res, err := c.Conn.Request(ctx, method, data)
	if c.m != nil {
		c.m.serverRequests.WithLabelValues(method, requestResult(err)).Inc()
	}
	return res, err
}

func requestResult(err error) string {
	var re *RemoteError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &re):
		return "rejected"
	case errors.Is(err, ErrRequestTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, ErrConnClosed), errors.Is(err, context.Canceled):
		return "closed"
	}
	return "error"
}

// roomsCollector computes the room gauges at scrape time.
type roomsCollector struct{ rooms *room.Manager }

var (
	descRooms = prometheus.NewDesc(metricsNamespace+"_rooms", "Open rooms.", nil, nil)
	descPeers = prometheus.NewDesc(metricsNamespace+"_peers",
		"Peers in rooms, by whether they joined (joined=\"false\": connected, not joined yet).", []string{"joined"}, nil)
	descTransports    = prometheus.NewDesc(metricsNamespace+"_transports", "Transports of all peers.", nil, nil)
	descProducers     = prometheus.NewDesc(metricsNamespace+"_producers", "Producers of all peers.", nil, nil)
	descConsumers     = prometheus.NewDesc(metricsNamespace+"_consumers", "Consumers of all peers.", nil, nil)
	descDataProducers = prometheus.NewDesc(metricsNamespace+"_data_producers", "Data producers of all peers.", nil, nil)
	descDataConsumers = prometheus.NewDesc(metricsNamespace+"_data_consumers", "Data consumers of all peers.", nil, nil)
	descRoomRouters   = prometheus.NewDesc(metricsNamespace+"_room_routers",
		"Routers (one per worker used) of the rooms, summed; above the number of rooms when rooms spread.", nil, nil)
	descPipes = prometheus.NewDesc(metricsNamespace+"_pipes",
		"Producers and data producers piped between the routers of a room.", nil, nil)
)

func (c *roomsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRooms, descPeers, descTransports, descProducers, descConsumers, descRoomRouters, descPipes,
		descDataProducers, descDataConsumers} {
		ch <- d
	}
}

func (c *roomsCollector) Collect(ch chan<- prometheus.Metric) {
	rooms := c.rooms.Rooms()
	var joined, waiting, routers, pipes int
	var sum room.Counts
	for _, r := range rooms {
		routers += len(r.ReadyRouters())
		pipes += r.Pipes()
		for _, p := range r.Snapshot() {
			n := p.Counts
			if p.Joined {
				joined++
			} else {
				waiting++
			}
			sum.Transports += n.Transports
			sum.Producers += n.Producers
			sum.Consumers += n.Consumers
			sum.DataProducers += n.DataProducers
			sum.DataConsumers += n.DataConsumers
		}
	}
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	gauge(descRooms, len(rooms))
	gauge(descPeers, joined, "true")
	gauge(descPeers, waiting, "false")
	gauge(descTransports, sum.Transports)
	gauge(descProducers, sum.Producers)
	gauge(descConsumers, sum.Consumers)
	gauge(descDataProducers, sum.DataProducers)
	gauge(descDataConsumers, sum.DataConsumers)
	gauge(descRoomRouters, routers)
	gauge(descPipes, pipes)
}

// workersCollector reports each worker slot: up, restarts, routers, and the
// process's CPU time and peak memory from getrusage() (asked at scrape time).
type workersCollector struct{ workers Workers }

var (
	descWorkerUp = prometheus.NewDesc(metricsNamespace+"_worker_up",
		"1 when the worker slot holds a live mediasoup worker process.", []string{"worker"}, nil)
	descWorkerRestarts = prometheus.NewDesc(metricsNamespace+"_worker_restarts_total",
		"Times the worker slot's process was respawned after a death.", []string{"worker"}, nil)
	descWorkerRouters = prometheus.NewDesc(metricsNamespace+"_worker_routers",
		"Routers on the worker.", []string{"worker"}, nil)
	descWorkerPending = prometheus.NewDesc(metricsNamespace+"_worker_pending_requests",
		"Requests in flight to the worker (climbing: the worker is falling behind).", []string{"worker"}, nil)
	descWorkerCPU = prometheus.NewDesc(metricsNamespace+"_worker_cpu_seconds_total",
		"CPU time of the current worker process (ru_utime, ru_stime), by mode user|system.", []string{"worker", "mode"}, nil)
	descWorkerMaxRSS = prometheus.NewDesc(metricsNamespace+"_worker_max_rss_bytes",
		"Peak resident memory of the current worker process (ru_maxrss).", []string{"worker"}, nil)
	descWorkerStartTimeouts = prometheus.NewDesc(metricsNamespace+"_worker_start_timeouts_total",
		"Worker starts that missed mediasoup-go's 1 s start timeout (the process is killed and the start retried; mediasoup-go keeps two goroutines of each).", nil, nil)
)

func (c *workersCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWorkerUp, descWorkerRestarts, descWorkerRouters, descWorkerPending, descWorkerCPU, descWorkerMaxRSS, descWorkerStartTimeouts} {
		ch <- d
	}
}

func (c *workersCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descWorkerStartTimeouts, prometheus.CounterValue, float64(worker.AbandonedStarts()))
	for _, in := range c.workers.Infos() {
		w := strconv.Itoa(in.Index)
		ch <- prometheus.MustNewConstMetric(descWorkerUp, prometheus.GaugeValue, b2f(in.State == worker.StateAlive), w)
		ch <- prometheus.MustNewConstMetric(descWorkerRestarts, prometheus.CounterValue, float64(in.Restarts), w)
		ch <- prometheus.MustNewConstMetric(descWorkerRouters, prometheus.GaugeValue, float64(in.Routers), w)
		ch <- prometheus.MustNewConstMetric(descWorkerPending, prometheus.GaugeValue, float64(in.PendingRequests), w)
	}
	wl, ok := c.workers.(workerList)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), resourceUsageTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, wk := range wl.Workers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ru, err := wk.ResourceUsage(ctx)
			if err != nil {
				return // dead or respawning: no sample
			}
			w := strconv.Itoa(wk.Index())
			ch <- prometheus.MustNewConstMetric(descWorkerCPU, prometheus.CounterValue, float64(ru.RuUtime)/1000, w, "user")
			ch <- prometheus.MustNewConstMetric(descWorkerCPU, prometheus.CounterValue, float64(ru.RuStime)/1000, w, "system")
			// Linux reports ru_maxrss in KiB.
			ch <- prometheus.MustNewConstMetric(descWorkerMaxRSS, prometheus.GaugeValue, float64(ru.RuMaxrss)*1024, w)
		}()
	}
	wg.Wait()
}
