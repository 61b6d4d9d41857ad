// Package config builds the effective mediasoup-server configuration from
// built-in defaults, an optional YAML file, environment variables and
// command-line flags (later wins), and validates it.
//
// Every key has an environment variable named EnvPrefix plus the key path in
// UPPER_SNAKE_CASE (worker.rtcPort -> MEDIASOUP_SERVER_WORKER_RTC_PORT). The
// names are derived from the yaml tags, so a new field gets one for free; see
// EnvNames. mediasoup-server.sample.yaml in this directory lists every key
// with its default, environment variable and flag.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"
)

// EnvPrefix prefixes every environment variable read by Load.
const EnvPrefix = "MEDIASOUP_SERVER_"

// workerBinEnvAlias is the conventional variable naming the mediasoup-worker
// binary; it sets worker.bin when EnvPrefix+"WORKER_BIN" is not set.
const workerBinEnvAlias = "MEDIASOUP_WORKER_BIN"

// Config is the complete server configuration.
type Config struct {
	Listen   string `yaml:"listen"`   // HTTP + WebSocket listen address, default ":4443"
	TLSCert  string `yaml:"tlsCert"`  // default ""; with TLSKey serves HTTPS/WSS
	TLSKey   string `yaml:"tlsKey"`   // default ""
	LogLevel string `yaml:"logLevel"` // debug|info|warn|error, default "info"
	WebDir   string `yaml:"webDir"`   // static web client served at /, default "web/dist"
	// DrainGrace: on SIGTERM/SIGINT the server stops admitting peers and
	// lets the rooms run this long (or until they are empty) before it closes
	// them. Default 10s.
	DrainGrace Duration `yaml:"drainGrace"`
	// AuthSecret turns auth on: WebSocket peers and the broadcaster API need
	// an HS256 JWT signed with it, /admin an admin token. "" = off (default).
	AuthSecret string `yaml:"authSecret"`
	// AllowedOrigins: browser Origins allowed to open the WebSocket
	// (e.g. https://app.example.com); empty = any (default).
	AllowedOrigins StringList `yaml:"allowedOrigins"`
	// Pprof serves Go's profiler at /debug/pprof/ (an admin token when auth
	// is on), for profiling a live server. Default false.
	Pprof bool `yaml:"pprof"`
	// NodeID names this node in cluster mode (default: the hostname plus a
	// random suffix, chosen at start).
	NodeID    string          `yaml:"nodeId"`
	Redis     RedisConfig     `yaml:"redis"`
	Worker    WorkerConfig    `yaml:"worker"`
	Signaling SignalingConfig `yaml:"signaling"`
	Room      RoomConfig      `yaml:"room"`
}

// RedisConfig turns cluster mode on: several nodes share rooms through one
// Redis (see the cluster package).
type RedisConfig struct {
	// URL of the Redis server: redis://[:password@]host:port/db, or
	// rediss:// for TLS. "" = one node, no Redis (default).
	URL string `yaml:"url"`
}

// SignalingConfig bounds what one WebSocket connection may cost.
type SignalingConfig struct {
	MaxFrameBytes            int      `yaml:"maxFrameBytes"`            // a larger frame closes the connection (default 1 MiB)
	RequestsPerSecond        int      `yaml:"requestsPerSecond"`        // sustained requests per connection; beyond: 429 (default 50)
	RequestBurst             int      `yaml:"requestBurst"`             // burst above the rate (default 100)
	MaxPendingServerRequests int      `yaml:"maxPendingServerRequests"` // unanswered newConsumer etc. per connection (default 1000)
	MaxMalformedFrames       int      `yaml:"maxMalformedFrames"`       // malformed frames before the connection is closed (default 50)
	PingInterval             Duration `yaml:"pingInterval"`             // keep-alive ping interval (default 10s)
	PongTimeout              Duration `yaml:"pongTimeout"`              // silence after which a peer is closed (default 30s)
	ServerRequestTimeout     Duration `yaml:"serverRequestTimeout"`     // how long a client may take to answer newConsumer (default 15s)
}

// RoomConfig limits rooms and peers.
type RoomConfig struct {
	MaxPeers                int      `yaml:"maxPeers"`                // peers per room (default 200)
	MaxTransportsPerPeer    int      `yaml:"maxTransportsPerPeer"`    // (default 4)
	MaxProducersPerPeer     int      `yaml:"maxProducersPerPeer"`     // (default 32)
	MaxDataProducersPerPeer int      `yaml:"maxDataProducersPerPeer"` // (default 32)
	IceDisconnectGrace      Duration `yaml:"iceDisconnectGrace"`      // ICE disconnected this long frees the peer (default 30s)
	RouterConsumerBudget    int      `yaml:"routerConsumerBudget"`    // consumers a room's router may hold (projected for a full mesh) before the room takes another worker (default 400)
	MaxWorkers              int      `yaml:"maxWorkers"`              // workers one room may spread over; 0 = all, 1 = never spread (default 0)
}

// WorkerConfig configures the mediasoup-worker processes and their WebRtcServers.
type WorkerConfig struct {
	Bin              string `yaml:"bin"`              // path of mediasoup-worker; "" = look it up (default "")
	Count            int    `yaml:"count"`            // number of workers; 0 = one per CPU (default 0)
	RtcPort          int    `yaml:"rtcPort"`          // first WebRtcServer port; worker i listens UDP+TCP on rtcPort+i (default 44444)
	ListenIP         string `yaml:"listenIp"`         // IP the WebRtcServers bind (default "127.0.0.1")
	AnnouncedAddress string `yaml:"announcedAddress"` // IP or hostname put in ICE candidates (default ""; auto-detected when listenIp is 0.0.0.0 or ::)
	// ListenInfos, when not empty, replaces listenIp/announcedAddress: one
	// entry per address the WebRtcServers bind, each with its own announced
	// address (default: none).
	ListenInfos     ListenInfos `yaml:"listenInfos"`
	LogLevel        string      `yaml:"logLevel"`        // the worker's own log level: debug|warn|error|none (default "warn")
	RespawnMinDelay Duration    `yaml:"respawnMinDelay"` // first respawn backoff (default 100ms)
	RespawnMaxDelay Duration    `yaml:"respawnMaxDelay"` // backoff cap (default 10s)
}

// Default returns the built-in defaults.
func Default() Config {
	return Config{
		Listen:     ":4443",
		LogLevel:   "info",
		WebDir:     "web/dist",
		DrainGrace: Duration(10 * time.Second),
		Worker: WorkerConfig{
			RtcPort:         44444,
			ListenIP:        "127.0.0.1",
			LogLevel:        "warn",
			RespawnMinDelay: Duration(100 * time.Millisecond),
			RespawnMaxDelay: Duration(10 * time.Second),
		},
		Signaling: SignalingConfig{
			MaxFrameBytes:            1 << 20,
			RequestsPerSecond:        50,
			RequestBurst:             100,
			MaxPendingServerRequests: 1000,
			MaxMalformedFrames:       50,
			PingInterval:             Duration(10 * time.Second),
			PongTimeout:              Duration(30 * time.Second),
			ServerRequestTimeout:     Duration(15 * time.Second),
		},
		Room: RoomConfig{
			MaxPeers:                200,
			MaxTransportsPerPeer:    4,
			MaxProducersPerPeer:     32,
			MaxDataProducersPerPeer: 32,
			IceDisconnectGrace:      Duration(30 * time.Second),
			RouterConsumerBudget:    400,
		},
	}
}

// WorkerCount is the number of workers to start: Worker.Count, or
// runtime.NumCPU() when it is 0.
func (c Config) WorkerCount() int {
	if c.Worker.Count > 0 {
		return c.Worker.Count
	}
	return runtime.NumCPU()
}

// Duration is a time.Duration that reads/writes YAML as a Go duration string
// ("100ms", "10s"). *Duration is also a flag.Value.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d like time.Duration.String.
func (d Duration) String() string { return time.Duration(d).String() }

// Set parses a Go duration string (flag.Value).
func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a duration (e.g. \"100ms\", \"10s\")", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a duration string such as \"100ms\"", n.Line)
	}
	if err := d.Set(n.Value); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

// flagSpecs maps the command-line flags (a contract scripts rely on) to keys.
var flagSpecs = []struct{ name, key, usage string }{
	{"listen", "listen", "HTTP + WebSocket listen address `HOST:PORT`"},
	{"tls-cert", "tlsCert", "TLS certificate `FILE` (with -tls-key: serve HTTPS/WSS)"},
	{"tls-key", "tlsKey", "TLS private key `FILE`"},
	{"log-level", "logLevel", "server log `LEVEL`: debug|info|warn|error"},
	{"web-dir", "webDir", "`DIR` of the browser client served at / (built by make web)"},
	{"router-consumer-budget", "room.routerConsumerBudget", "consumers `N` a room's router may hold (projected for a full mesh) before the room spreads to another worker"},
	{"drain-grace", "drainGrace", "on SIGTERM, let rooms run this `DURATION` before closing them (0s: close at once)"},
	{"auth-secret", "authSecret", "HS256 `SECRET` (>= 32 bytes) that tokens are signed with; empty: auth off"},
	{"allowed-origins", "allowedOrigins", "comma-separated `ORIGINS` allowed to open the WebSocket; empty: any"},
	{"redis", "redis.url", "Redis `URL` (redis://[:password@]host:port/db or rediss://…): cluster mode, rooms shared by several nodes; empty: one node"},
	{"node-id", "nodeId", "this node's `ID` in cluster mode (default: hostname plus a random suffix)"},
	{"worker-bin", "worker.bin", "`PATH` of mediasoup-worker (empty: look it up)"},
	{"workers", "worker.count", "number of workers `N` (0 = one per CPU)"},
	{"rtc-port", "worker.rtcPort", "first WebRtcServer `PORT`; worker i listens UDP+TCP on PORT+i"},
	{"listen-ip", "worker.listenIp", "`IP` the WebRtcServers bind"},
	{"announced-ip", "worker.announcedAddress", "`ADDR` (IP or hostname) announced in ICE candidates"},
	{"listen-infos", "worker.listenInfos", "`LIST` of [udp:|tcp:]IP[=ANNOUNCED][+internal], comma-separated; replaces -listen-ip/-announced-ip"},
	{"worker-log-level", "worker.logLevel", "mediasoup-worker log `LEVEL`: debug|warn|error|none"},
}

// Load builds the effective config: Default(), then the YAML file named by
// -config (if given), then environment variables, then command-line flags —
// later wins. Only flags actually present in args override. args excludes the
// program name. getenv is os.Getenv in production; an empty value counts as
// unset. -h/-help yields an error matching flag.ErrHelp. When only Validate
// fails, the effective config is returned along with the error.
func Load(args []string, getenv func(string) string) (Config, error) {
	fs := flag.NewFlagSet("mediasoup-server", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	configFile := fs.String("config", "", "YAML config `FILE` (see mediasoup-server.sample.yaml)")

	// Flags are bound to a scratch copy; values of the flags that were set
	// are copied over the real config last.
	fromFlags := Default()
	for _, s := range flagSpecs {
		f, ok := fieldByKey(&fromFlags, s.key)
		if !ok {
			panic("config: flag -" + s.name + " names unknown key " + s.key)
		}
		switch p := f.Addr().Interface().(type) {
		case flag.Value:
			fs.Var(p, s.name, s.usage)
		case *string:
			fs.StringVar(p, s.name, *p, s.usage)
		case *int:
			fs.IntVar(p, s.name, *p, s.usage)
		case *bool:
			fs.BoolVar(p, s.name, *p, s.usage)
		default:
			panic("config: no flag support for type of " + s.key)
		}
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	cfg := Default()
	if *configFile != "" {
		if err := loadFile(&cfg, *configFile); err != nil {
			return Config{}, err
		}
	}
	if err := applyEnv(&cfg, getenv); err != nil {
		return Config{}, err
	}
	fs.Visit(func(f *flag.Flag) {
		for _, s := range flagSpecs {
			if s.name == f.Name {
				dst, _ := fieldByKey(&cfg, s.key)
				src, _ := fieldByKey(&fromFlags, s.key)
				dst.Set(src)
			}
		}
	})
	return cfg, cfg.Validate()
}

// loadFile decodes the YAML file at path over cfg, rejecting unknown keys.
func loadFile(cfg *Config, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file
		}
		return fmt.Errorf("config file %s: %w", path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: more than one YAML document", path)
	}
	return nil
}

// applyEnv sets every key whose environment variable is non-empty.
func applyEnv(cfg *Config, getenv func(string) string) error {
	var errs []error
	walk(reflect.ValueOf(cfg).Elem(), nil, func(path []string, f reflect.Value) {
		name := envName(path)
		val := getenv(name)
		if val == "" && name == EnvPrefix+"WORKER_BIN" {
			if val = getenv(workerBinEnvAlias); val != "" {
				name = workerBinEnvAlias
			}
		}
		if val == "" {
			return
		}
		if err := setFromString(f, val); err != nil {
			errs = append(errs, fmt.Errorf("environment variable %s: %w", name, err))
		}
	})
	return errors.Join(errs...)
}

func setFromString(f reflect.Value, s string) error {
	if v, ok := f.Addr().Interface().(flag.Value); ok {
		return v.Set(s)
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, f.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		f.SetInt(n)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not a boolean", s)
		}
		f.SetBool(b)
	default:
		return fmt.Errorf("unsupported type %s", f.Type())
	}
	return nil
}

// EnvNames lists the environment variables Load reads, one per key, in field
// order (the MEDIASOUP_WORKER_BIN alias is not included).
func EnvNames() []string {
	var names []string
	var c Config
	walk(reflect.ValueOf(&c).Elem(), nil, func(path []string, _ reflect.Value) {
		names = append(names, envName(path))
	})
	return names
}

// walk calls fn for every leaf field of the struct v with its yaml key path.
// Nested structs (other than types with their own YAML unmarshaling) are
// descended into; fields tagged yaml:"-" are skipped.
func walk(v reflect.Value, prefix []string, fn func(path []string, f reflect.Value)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		key := yamlKey(sf)
		if key == "-" {
			continue
		}
		path := append(append([]string(nil), prefix...), key)
		f := v.Field(i)
		if f.Kind() == reflect.Struct {
			if _, ok := f.Addr().Interface().(yaml.Unmarshaler); !ok {
				walk(f, path, fn)
				continue
			}
		}
		fn(path, f)
	}
}

// yamlKey is the key yaml.v3 uses for sf.
func yamlKey(sf reflect.StructField) string {
	name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
	if name == "" {
		return strings.ToLower(sf.Name)
	}
	return name
}

// fieldByKey finds the leaf field for a dotted key path such as "worker.rtcPort".
func fieldByKey(c *Config, key string) (reflect.Value, bool) {
	var found reflect.Value
	walk(reflect.ValueOf(c).Elem(), nil, func(path []string, f reflect.Value) {
		if strings.Join(path, ".") == key {
			found = f
		}
	})
	return found, found.IsValid()
}

// envName turns a key path into its variable: [worker rtcPort] -> MEDIASOUP_SERVER_WORKER_RTC_PORT.
func envName(path []string) string {
	parts := make([]string, len(path))
	for i, p := range path {
		parts[i] = upperSnake(p)
	}
	return EnvPrefix + strings.Join(parts, "_")
}

func upperSnake(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if i > 0 && unicode.IsUpper(r) {
			prev := rs[i-1]
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

var (
	logLevels       = []string{"debug", "info", "warn", "error"}
	workerLogLevels = []string{"debug", "warn", "error", "none"}
)

// MinAuthSecretLen is the shortest accepted authSecret: HS256 wants a key
// of at least 256 bits.
const MinAuthSecretLen = 32

// maxWorkers is the largest accepted worker.count.
const maxWorkers = 64

// Validate reports every invalid value, joined; each error starts with the
// YAML key it concerns, e.g. "worker.rtcPort: 70000 is not a port (1-65535)".
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
	}

	if host, port, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not host:port", c.Listen)
	} else {
		// Port 0 picks a free port (the server logs the one it got).
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad("listen", "port %q in %q is not a port (0-65535)", port, c.Listen)
		}
		if host != "" && net.ParseIP(host) == nil {
			if msg := hostnameProblem(host); msg != "" {
				bad("listen", "host %q %s", host, msg)
			}
		}
	}

	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		bad("tlsKey", "must be set when tlsCert is set")
	case c.TLSCert == "" && c.TLSKey != "":
		bad("tlsCert", "must be set when tlsKey is set")
	}
	for _, kv := range [][2]string{{"tlsCert", c.TLSCert}, {"tlsKey", c.TLSKey}} {
		if kv[1] == "" {
			continue
		}
		if st, err := os.Stat(kv[1]); err != nil {
			bad(kv[0], "%v", err)
		} else if st.IsDir() {
			bad(kv[0], "%s is a directory", kv[1])
		}
	}

	if !slices.Contains(logLevels, c.LogLevel) {
		bad("logLevel", "%q is not one of %s", c.LogLevel, strings.Join(logLevels, "|"))
	}

	w := c.Worker
	countOK := w.Count >= 0 && w.Count <= maxWorkers
	if !countOK {
		bad("worker.count", "%d is out of range (0-%d, 0 = one per CPU)", w.Count, maxWorkers)
	}
	if w.RtcPort < 1 || w.RtcPort > 65535 {
		bad("worker.rtcPort", "%d is not a port (1-65535)", w.RtcPort)
	} else if countOK {
		if last := w.RtcPort + c.WorkerCount() - 1; last > 65535 {
			bad("worker.rtcPort", "%d with %d workers needs ports up to %d (max 65535)", w.RtcPort, c.WorkerCount(), last)
		}
	}
	// 0.0.0.0 / :: without an announced address is fine: the server
	// announces an address of the host (config.AutoAnnounce) and logs it.
	if ip := net.ParseIP(w.ListenIP); ip == nil {
		bad("worker.listenIp", "%q is not an IP address", w.ListenIP)
	}
	validateListenInfos(w.ListenInfos, bad)
	if a := w.AnnouncedAddress; a != "" && net.ParseIP(a) == nil {
		if msg := hostnameProblem(a); msg != "" {
			bad("worker.announcedAddress", "%q %s", a, msg)
		}
	}
	if !slices.Contains(workerLogLevels, w.LogLevel) {
		bad("worker.logLevel", "%q is not one of %s", w.LogLevel, strings.Join(workerLogLevels, "|"))
	}
	if w.RespawnMinDelay <= 0 {
		bad("worker.respawnMinDelay", "%s must be > 0", w.RespawnMinDelay)
	}
	if w.RespawnMaxDelay < w.RespawnMinDelay {
		bad("worker.respawnMaxDelay", "%s must be >= worker.respawnMinDelay (%s)", w.RespawnMaxDelay, w.RespawnMinDelay)
	}
	positive := func(key string, v int64) {
		if v <= 0 {
			bad(key, "%d must be > 0", v)
		}
	}
	sg, rm := c.Signaling, c.Room
	for key, v := range map[string]int64{
		"signaling.maxFrameBytes": int64(sg.MaxFrameBytes), "signaling.requestsPerSecond": int64(sg.RequestsPerSecond),
		"signaling.requestBurst": int64(sg.RequestBurst), "signaling.maxPendingServerRequests": int64(sg.MaxPendingServerRequests),
		"signaling.maxMalformedFrames": int64(sg.MaxMalformedFrames), "signaling.pingInterval": int64(sg.PingInterval),
		"signaling.pongTimeout": int64(sg.PongTimeout), "signaling.serverRequestTimeout": int64(sg.ServerRequestTimeout),
		"room.maxPeers": int64(rm.MaxPeers), "room.maxTransportsPerPeer": int64(rm.MaxTransportsPerPeer),
		"room.maxProducersPerPeer": int64(rm.MaxProducersPerPeer), "room.maxDataProducersPerPeer": int64(rm.MaxDataProducersPerPeer),
		"room.iceDisconnectGrace": int64(rm.IceDisconnectGrace), "room.routerConsumerBudget": int64(rm.RouterConsumerBudget),
	} {
		positive(key, v)
	}
	if c.DrainGrace < 0 {
		bad("drainGrace", "%s must be >= 0", c.DrainGrace)
	}
	if c.AuthSecret != "" && len(c.AuthSecret) < MinAuthSecretLen {
		bad("authSecret", "must be at least %d bytes (e.g. the output of `openssl rand -hex 32`)", MinAuthSecretLen)
	}
	for _, o := range c.AllowedOrigins {
		if msg := originProblem(o); msg != "" {
			bad("allowedOrigins", "%q %s", o, msg)
		}
	}
	if c.Redis.URL != "" {
		if msg := redisURLProblem(c.Redis.URL); msg != "" {
			bad("redis.url", "%s", msg)
		}
	}
	if c.NodeID != "" && (len(c.NodeID) > 64 || strings.ContainsFunc(c.NodeID, func(r rune) bool {
		return !(r == '-' || r == '_' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	})) {
		bad("nodeId", "%q: 1-64 characters of A-Z a-z 0-9 . _ -", c.NodeID)
	}
	if rm.MaxWorkers < 0 {
		bad("room.maxWorkers", "%d must be >= 0 (0 = all workers)", rm.MaxWorkers)
	}
	if sg.PongTimeout <= sg.PingInterval {
		bad("signaling.pongTimeout", "%s must be longer than signaling.pingInterval (%s)", sg.PongTimeout, sg.PingInterval)
	}
	return errors.Join(errs...)
}

// redisURLProblem returns why u is not a Redis URL
// (redis://[:password@]host:port/db or rediss://…), or "". The password is
// never echoed.
func redisURLProblem(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "is not a URL (redis://[:password@]host:port/db)"
	}
	if p.Scheme != "redis" && p.Scheme != "rediss" {
		return fmt.Sprintf("scheme %q: want redis:// or rediss://", p.Scheme)
	}
	if p.Host == "" {
		return "has no host (redis://host:port/db)"
	}
	if db := strings.TrimPrefix(p.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 {
			return fmt.Sprintf("database %q is not a number", db)
		}
	}
	return ""
}

// originProblem returns why o is not an Origin as browsers send it
// (scheme://host[:port], no path), or "".
func originProblem(o string) string {
	scheme, rest, ok := strings.Cut(o, "://")
	switch {
	case !ok || scheme == "" || rest == "":
		return "is not an origin (scheme://host[:port], e.g. https://app.example.com)"
	case strings.ContainsAny(rest, "/?#@ "):
		return "must be scheme://host[:port] without a path"
	}
	return ""
}

// hostnameProblem returns why h is not a plain DNS hostname, or "".
func hostnameProblem(h string) string {
	switch {
	case strings.Contains(h, "://"):
		return "must not have a scheme"
	case strings.ContainsFunc(h, unicode.IsSpace):
		return "must not contain spaces"
	case strings.Contains(h, ":"):
		return "must not have a port (nor be a bracketed IP)"
	case strings.ContainsAny(h, "/?#@"):
		return "is not a hostname"
	case len(h) > 253:
		return "is longer than 253 characters"
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return "is not a hostname (empty or over-long label)"
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "is not a hostname (label starts or ends with '-')"
		}
		for _, r := range label {
			if !(r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				return fmt.Sprintf("is not a hostname (character %q)", r)
			}
		}
	}
	return ""
}
