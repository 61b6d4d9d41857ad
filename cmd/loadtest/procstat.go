package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Process CPU and memory, read from /proc/<pid>/stat and /proc/<pid>/status.
// This only works when the load generator runs on the server's machine
// (the pids come from the server's /healthz and -server-pid).

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat. It is
// 100 on every Linux architecture Go supports (the kernel's HZ may differ;
// USER_HZ, what /proc reports in, does not).
const clockTicks = 100

// procSample is one reading of a process.
type procSample struct {
	cpu   time.Duration // utime + stime, cumulative
	rssKB int64
}

func readProc(pid int) (procSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{}, err
	}
	// pid (comm) state ppid ... : comm may hold spaces and parentheses, so
	// split after the last ')'. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return procSample{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return procSample{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	// f[0] is field 3 (state): field n is f[n-3].
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return procSample{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	s := procSample{cpu: time.Duration(ut+st) * time.Second / clockTicks}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procSample{}, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb := strings.Fields(rest)
			if len(kb) > 0 {
				s.rssKB, _ = strconv.ParseInt(kb[0], 10, 64)
			}
			break
		}
	}
	return s, nil
}

// ProcStats is what was seen of one process during the run.
type ProcStats struct {
	Name string `json:"name"`
	Pid  int    `json:"pid"`
	// CPU time used in each phase (seconds) and the average share of one
	// core it means (percent; 200 = two cores busy).
	PhaseCPUSeconds map[string]float64 `json:"phaseCpuSeconds"`
	PhaseCPUPercent map[string]float64 `json:"phaseCpuPercent"`
	// The highest CPU share over one sampling interval, percent of one core.
	MaxCPUPercent float64 `json:"maxCpuPercent"`
	PeakRSSMB     float64 `json:"peakRssMB"`
	EndRSSMB      float64 `json:"endRssMB"`
	Error         string  `json:"error,omitempty"`
}

type procTrack struct {
	name string
	pid  int

	last     procSample
	lastAt   time.Time
	maxPct   float64
	peakKB   int64
	marks    map[string]procSample // cumulative CPU at the start of each phase
	phaseEnd map[string]procSample
	err      error
}

// sampler reads the tracked processes every interval and at phase marks.
type sampler struct {
	interval time.Duration

	mu     sync.Mutex
	procs  []*procTrack
	phases []phaseSpan
	stop   chan struct{}
	done   chan struct{}
}

type phaseSpan struct {
	name       string
	start, end time.Time
}

func newSampler(interval time.Duration) *sampler {
	return &sampler{interval: interval, stop: make(chan struct{}), done: make(chan struct{})}
}

// track adds a process (ignored when pid ≤ 0 or already tracked).
func (s *sampler) track(name string, pid int) {
	if pid <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if p.pid == pid {
			return
		}
	}
	p := &procTrack{name: name, pid: pid, marks: map[string]procSample{}, phaseEnd: map[string]procSample{}}
	if smp, err := readProc(pid); err != nil {
		p.err = err
	} else {
		p.last, p.lastAt, p.peakKB = smp, time.Now(), smp.rssKB
	}
	s.procs = append(s.procs, p)
}

func (s *sampler) start() {
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
}

func (s *sampler) close() {
	close(s.stop)
	<-s.done
	s.sample()
}

// sample reads every process; the caller must not hold s.mu.
func (s *sampler) sample() map[*procTrack]procSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	out := map[*procTrack]procSample{}
	for _, p := range s.procs {
		if p.err != nil {
			continue
		}
		smp, err := readProc(p.pid)
		if err != nil {
			p.err = err // gone (a worker died?)
			continue
		}
		if dt := now.Sub(p.lastAt); dt >= s.interval/2 {
			pct := 100 * float64(smp.cpu-p.last.cpu) / float64(dt)
			p.maxPct = max(p.maxPct, pct)
			p.last, p.lastAt = smp, now
		}
		p.peakKB = max(p.peakKB, smp.rssKB)
		out[p] = smp
	}
	return out
}

// phase ends the current phase (if any) and starts one named name ("" only
// ends the current one).
func (s *sampler) phase(name string) {
	now := time.Now()
	smp := s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.phases); n > 0 && s.phases[n-1].end.IsZero() {
		cur := &s.phases[n-1]
		cur.end = now
		for p, v := range smp {
			p.phaseEnd[cur.name] = v
		}
	}
	if name != "" {
		s.phases = append(s.phases, phaseSpan{name: name, start: now})
		for p, v := range smp {
			p.marks[name] = v
		}
	}
}

func (s *sampler) stats() []ProcStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProcStats, 0, len(s.procs))
	for _, p := range s.procs {
		ps := ProcStats{Name: p.name, Pid: p.pid, PhaseCPUSeconds: map[string]float64{}, PhaseCPUPercent: map[string]float64{},
			MaxCPUPercent: round1(p.maxPct), PeakRSSMB: round1(float64(p.peakKB) / 1024), EndRSSMB: round1(float64(p.last.rssKB) / 1024)}
		if p.err != nil {
			ps.Error = p.err.Error()
		}
		for _, ph := range s.phases {
			a, ok1 := p.marks[ph.name]
			b, ok2 := p.phaseEnd[ph.name]
			if !ok1 || !ok2 || ph.end.IsZero() {
				continue
			}
			cpu := (b.cpu - a.cpu).Seconds()
			ps.PhaseCPUSeconds[ph.name] = math.Round(cpu*100) / 100
			if wall := ph.end.Sub(ph.start).Seconds(); wall > 0 {
				ps.PhaseCPUPercent[ph.name] = round1(100 * cpu / wall)
			}
		}
		out = append(out, ps)
	}
	return out
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }
