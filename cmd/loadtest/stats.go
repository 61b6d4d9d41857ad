package main

import (
	"errors"
	"math"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/mediasoup-server/mediasoup-server/client"
)

// Latency summarises a set of durations, in milliseconds.
type Latency struct {
	Count  int     `json:"count"`
	MeanMs float64 `json:"meanMs"`
	P50Ms  float64 `json:"p50Ms"`
	P95Ms  float64 `json:"p95Ms"`
	P99Ms  float64 `json:"p99Ms"`
	MaxMs  float64 `json:"maxMs"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// summarize computes the nearest-rank percentiles of ds (sorted in place).
func summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(ds)))) - 1
		return ds[max(0, min(i, len(ds)-1))]
	}
	return Latency{
		Count:  len(ds),
		MeanMs: ms(sum / time.Duration(len(ds))),
		P50Ms:  ms(rank(0.50)),
		P95Ms:  ms(rank(0.95)),
		P99Ms:  ms(rank(0.99)),
		MaxMs:  ms(ds[len(ds)-1]),
	}
}

// MethodStats is the round-trip time of one request method and its errors
// by protocol error code ("0" when the request got no answer).
type MethodStats struct {
	Method string         `json:"method"`
	RTT    Latency        `json:"rtt"` // successful requests only
	Errors map[string]int `json:"errors,omitempty"`
}

// recorder collects RTT samples per method. Safe for concurrent use.
type recorder struct {
	mu      sync.Mutex
	samples map[string][]time.Duration
	errs    map[string]map[int]int
}

func newRecorder() *recorder {
	return &recorder{samples: map[string][]time.Duration{}, errs: map[string]map[int]int{}}
}

func (r *recorder) add(method string, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.samples[method] = append(r.samples[method], d)
		return
	}
	if r.errs[method] == nil {
		r.errs[method] = map[int]int{}
	}
	r.errs[method][errorCode(err)]++
}

// merge adds a batch of successful samples and error counts of one method.
func (r *recorder) merge(method string, ok []time.Duration, errs map[int]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples[method] = append(r.samples[method], ok...)
	for code, n := range errs {
		if r.errs[method] == nil {
			r.errs[method] = map[int]int{}
		}
		r.errs[method][code] += n
	}
}

func (r *recorder) stats() []MethodStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := map[string]bool{}
	for m := range r.samples {
		names[m] = true
	}
	for m := range r.errs {
		names[m] = true
	}
	out := make([]MethodStats, 0, len(names))
	for m := range names {
		s := MethodStats{Method: m, RTT: summarize(slices.Clone(r.samples[m]))}
		for code, n := range r.errs[m] {
			if s.Errors == nil {
				s.Errors = map[string]int{}
			}
			s.Errors[codeName(code)] = n
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return methodOrder(out[i].Method) < methodOrder(out[j].Method) })
	return out
}

// methodOrder lists methods in the order a peer sends them.
func methodOrder(m string) string {
	order := []string{"getRouterRtpCapabilities", "createWebRtcTransport", "connectWebRtcTransport", "join", "produce", "getTransportStats"}
	for i, o := range order {
		if o == m {
			return string(rune('a'+i)) + m
		}
	}
	return "z" + m
}

// errorCode is the protocol error code of a request error, 0 when the
// request got no answer (timeout, connection gone).
func errorCode(err error) int {
	var re *client.ResponseError
	if errors.As(err, &re) {
		return re.Code
	}
	return 0
}

func codeName(code int) string {
	if code == 0 {
		return "no answer"
	}
	return strconv.Itoa(code)
}
