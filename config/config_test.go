package config

import (
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const sampleFile = "mediasoup-server.sample.yaml"

// env returns a getenv backed by a map.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readSample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(sampleFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The sample decodes (unknown keys rejected) to exactly Default(), starting
// from a zero Config so that a missing key is noticed too.
func TestSampleIsDefault(t *testing.T) {
	var got Config
	if err := loadFile(&got, sampleFile); err != nil {
		t.Fatalf("decoding sample: %v", err)
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("sample decodes to\n%+v\nwant Default()\n%+v", got, want)
	}
	loaded, err := Load([]string{"-config", sampleFile}, env(nil))
	if err != nil {
		t.Fatalf("Load(sample): %v", err)
	}
	if !reflect.DeepEqual(loaded, Default()) {
		t.Errorf("Load(sample) = %+v, want Default()", loaded)
	}
}

// Every key path of Config is present in the sample (even keys whose default
// is the zero value, which TestSampleIsDefault cannot see).
func TestSampleListsEveryKey(t *testing.T) {
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(readSample(t)), &root); err != nil {
		t.Fatal(err)
	}
	var c Config
	walk(reflect.ValueOf(&c).Elem(), nil, func(path []string, _ reflect.Value) {
		n := root.Content[0]
		for _, key := range path {
			var next *yaml.Node
			for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == key {
					next = n.Content[i+1]
				}
			}
			if next == nil {
				t.Errorf("sample file lacks key %s", strings.Join(path, "."))
				return
			}
			n = next
		}
	})
}

// Every struct field has a yaml tag, and keys are unique per level.
func TestEveryFieldHasYAMLTag(t *testing.T) {
	unmarshaler := reflect.TypeFor[yaml.Unmarshaler]()
	var check func(t reflect.Type, prefix string)
	check = func(typ reflect.Type, prefix string) {
		seen := map[string]string{}
		for i := 0; i < typ.NumField(); i++ {
			sf := typ.Field(i)
			tag, ok := sf.Tag.Lookup("yaml")
			name, _, _ := strings.Cut(tag, ",")
			if !ok || name == "" || name == "-" {
				t.Errorf("%s%s.%s has no yaml key (tag %q)", prefix, typ.Name(), sf.Name, tag)
				continue
			}
			if other, dup := seen[name]; dup {
				t.Errorf("%s%s: fields %s and %s share yaml key %q", prefix, typ.Name(), other, sf.Name, name)
			}
			seen[name] = sf.Name
			if sf.Type.Kind() == reflect.Struct && !reflect.PointerTo(sf.Type).Implements(unmarshaler) {
				check(sf.Type, prefix+name+".")
			}
		}
	}
	check(reflect.TypeFor[Config](), "")
}

func TestEnvNames(t *testing.T) {
	names := EnvNames()
	for _, want := range []string{
		"MEDIASOUP_SERVER_LISTEN",
		"MEDIASOUP_SERVER_TLS_CERT",
		"MEDIASOUP_SERVER_TLS_KEY",
		"MEDIASOUP_SERVER_LOG_LEVEL",
		"MEDIASOUP_SERVER_WORKER_BIN",
		"MEDIASOUP_SERVER_WORKER_COUNT",
		"MEDIASOUP_SERVER_WORKER_RTC_PORT",
		"MEDIASOUP_SERVER_WORKER_LISTEN_IP",
		"MEDIASOUP_SERVER_WORKER_ANNOUNCED_ADDRESS",
		"MEDIASOUP_SERVER_WORKER_LOG_LEVEL",
		"MEDIASOUP_SERVER_WORKER_RESPAWN_MIN_DELAY",
		"MEDIASOUP_SERVER_WORKER_RESPAWN_MAX_DELAY",
		"MEDIASOUP_SERVER_WORKER_LISTEN_INFOS",
		"MEDIASOUP_SERVER_DRAIN_GRACE",
		"MEDIASOUP_SERVER_AUTH_SECRET",
		"MEDIASOUP_SERVER_ALLOWED_ORIGINS",
		"MEDIASOUP_SERVER_REDIS_URL",
		"MEDIASOUP_SERVER_NODE_ID",
		"MEDIASOUP_SERVER_PPROF",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("EnvNames() lacks %s; got %v", want, names)
		}
	}
	sample := readSample(t)
	for _, n := range append(names, workerBinEnvAlias) {
		if !regexp.MustCompile(`\b` + n + `\b`).MatchString(sample) {
			t.Errorf("sample file does not mention %s", n)
		}
	}
}

func TestUpperSnake(t *testing.T) {
	for in, want := range map[string]string{
		"listen":           "LISTEN",
		"tlsCert":          "TLS_CERT",
		"rtcPort":          "RTC_PORT",
		"listenIp":         "LISTEN_IP",
		"announcedAddress": "ANNOUNCED_ADDRESS",
		"respawnMinDelay":  "RESPAWN_MIN_DELAY",
		"httpURL":          "HTTP_URL",
		"ipv4Only":         "IPV4_ONLY",
	} {
		if got := upperSnake(in); got != want {
			t.Errorf("upperSnake(%q) = %q, want %q", in, got, want)
		}
	}
}

// The flag names are a contract; each maps to a key and appears in the sample.
func TestFlags(t *testing.T) {
	want := []string{"allowed-origins", "announced-ip", "auth-secret", "drain-grace", "listen", "listen-infos",
		"listen-ip", "log-level", "node-id", "redis", "router-consumer-budget", "rtc-port", "tls-cert", "tls-key", "web-dir", "worker-bin", "worker-log-level", "workers"}
	var got []string
	sample := readSample(t)
	for _, s := range flagSpecs {
		got = append(got, s.name)
		var c Config
		if _, ok := fieldByKey(&c, s.key); !ok {
			t.Errorf("flag -%s names unknown key %q", s.name, s.key)
		}
		if !regexp.MustCompile(`(^|[\s(,])-` + regexp.QuoteMeta(s.name) + `($|[\s),;])`).MatchString(sample) {
			t.Errorf("sample file does not mention flag -%s", s.name)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("flags = %v, want %v", got, want)
	}
	if _, err := Load([]string{"-config", sampleFile, "-workers", "2"}, env(nil)); err != nil {
		t.Errorf("-config with -workers: %v", err)
	}
	if _, err := Load([]string{"-h"}, env(nil)); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: err = %v, want flag.ErrHelp", err)
	}
	if _, err := Load([]string{"stray"}, env(nil)); err == nil {
		t.Error("stray positional argument accepted")
	}
}

func TestPrecedence(t *testing.T) {
	yamlText := `
listen: "127.0.0.1:8001"
logLevel: debug
worker:
  count: 2
  rtcPort: 40000
  listenIp: 10.0.0.1
  announcedAddress: yaml.example.com
  respawnMaxDelay: 30s
`
	file := writeFile(t, "cfg.yaml", yamlText)
	fromYAML := func(c *Config) {
		c.Listen = "127.0.0.1:8001"
		c.LogLevel = "debug"
		c.Worker.Count = 2
		c.Worker.RtcPort = 40000
		c.Worker.ListenIP = "10.0.0.1"
		c.Worker.AnnouncedAddress = "yaml.example.com"
		c.Worker.RespawnMaxDelay = Duration(30 * time.Second)
	}
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		apply []func(*Config)
	}{
		{name: "defaults only"},
		{name: "yaml over defaults", args: []string{"-config", file}, apply: []func(*Config){fromYAML}},
		{
			name: "env over yaml",
			args: []string{"-config", file},
			env: map[string]string{
				"MEDIASOUP_SERVER_LISTEN":                   ":9000",
				"MEDIASOUP_SERVER_WORKER_COUNT":             "3",
				"MEDIASOUP_SERVER_WORKER_RESPAWN_MIN_DELAY": "250ms",
				"MEDIASOUP_SERVER_WORKER_LOG_LEVEL":         "debug",
			},
			apply: []func(*Config){fromYAML, func(c *Config) {
				c.Listen = ":9000"
				c.Worker.Count = 3
				c.Worker.RespawnMinDelay = Duration(250 * time.Millisecond)
				c.Worker.LogLevel = "debug"
			}},
		},
		{
			name: "flags over env over yaml; unset flags keep yaml/env",
			args: []string{"-config", file, "-workers", "4", "-rtc-port", "50000", "-announced-ip", "1.2.3.4",
				"-log-level=warn", "-worker-log-level", "none"},
			env: map[string]string{
				"MEDIASOUP_SERVER_WORKER_COUNT":     "3",
				"MEDIASOUP_SERVER_LISTEN":           ":9000",
				"MEDIASOUP_SERVER_WORKER_LISTEN_IP": "10.0.0.2",
				"MEDIASOUP_SERVER_WORKER_LOG_LEVEL": "debug",
			},
			apply: []func(*Config){fromYAML, func(c *Config) {
				c.Listen = ":9000"             // env, -listen unset
				c.Worker.ListenIP = "10.0.0.2" // env, -listen-ip unset
				c.Worker.Count = 4
				c.Worker.RtcPort = 50000
				c.Worker.AnnouncedAddress = "1.2.3.4"
				c.LogLevel = "warn"
				c.Worker.LogLevel = "none"
			}},
		},
		{
			name: "flag set to its default value still overrides",
			args: []string{"-config", file, "-workers", "0", "-listen", ":4443"},
			apply: []func(*Config){fromYAML, func(c *Config) {
				c.Worker.Count = 0
				c.Listen = ":4443"
			}},
		},
		{
			name: "flags without file",
			args: []string{"-listen", "[::1]:443", "-listen-ip", "::1", "-worker-bin", "/opt/mediasoup-worker"},
			apply: []func(*Config){func(c *Config) {
				c.Listen = "[::1]:443"
				c.Worker.ListenIP = "::1"
				c.Worker.Bin = "/opt/mediasoup-worker"
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := Default()
			for _, f := range tt.apply {
				f(&want)
			}
			got, err := Load(tt.args, env(tt.env))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestWorkerBinAlias(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"alias alone", nil, map[string]string{"MEDIASOUP_WORKER_BIN": "/alias/worker"}, "/alias/worker"},
		{"prefixed wins", nil, map[string]string{
			"MEDIASOUP_WORKER_BIN": "/alias/worker", "MEDIASOUP_SERVER_WORKER_BIN": "/prefixed/worker"}, "/prefixed/worker"},
		{"flag wins", []string{"-worker-bin", "/flag/worker"}, map[string]string{"MEDIASOUP_WORKER_BIN": "/alias/worker"}, "/flag/worker"},
		{"neither", nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(tt.args, env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.Worker.Bin != tt.want {
				t.Errorf("worker.bin = %q, want %q", c.Worker.Bin, tt.want)
			}
		})
	}
}

func TestBadEnvNamesVariable(t *testing.T) {
	tests := []struct{ name, value string }{
		{"MEDIASOUP_SERVER_WORKER_COUNT", "abc"},
		{"MEDIASOUP_SERVER_WORKER_RTC_PORT", "44444x"},
		{"MEDIASOUP_SERVER_WORKER_RESPAWN_MIN_DELAY", "100"},
		{"MEDIASOUP_SERVER_WORKER_RESPAWN_MAX_DELAY", "soon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(nil, env(map[string]string{tt.name: tt.value}))
			if err == nil || !strings.Contains(err.Error(), tt.name) {
				t.Errorf("err = %v, want one naming %s", err, tt.name)
			}
		})
	}
}

func TestYAMLFile(t *testing.T) {
	tests := []struct {
		name    string
		content string
		wantErr []string // substrings; nil = must load fine
	}{
		{"empty file", "", nil},
		{"comments only", "# nothing here\n", nil},
		{"empty worker", "worker:\n", nil},
		{"unknown top-level key", "listn: \":80\"\n", []string{"listn"}},
		{"unknown worker key", "worker:\n  rtcPorts: 5000\n", []string{"rtcPorts"}},
		{"bad duration", "worker:\n  respawnMinDelay: 100\n", []string{"100"}},
		{"wrong type", "worker:\n  count: many\n", []string{"many"}},
		{"two documents", "listen: \":1\"\n---\nlisten: \":2\"\n", []string{"more than one"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeFile(t, "cfg.yaml", tt.content)
			c, err := Load([]string{"-config", file}, env(nil))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if !reflect.DeepEqual(c, Default()) {
					t.Errorf("got %+v, want Default()", c)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range append(tt.wantErr, file) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
	if _, err := Load([]string{"-config", filepath.Join(t.TempDir(), "missing.yaml")}, env(nil)); err == nil ||
		!strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: err = %v", err)
	}
}

func TestDuration(t *testing.T) {
	var d Duration
	if err := d.Set("1m30s"); err != nil || d.D() != 90*time.Second {
		t.Errorf("Set: %v, %v", d, err)
	}
	if err := d.Set("90"); err == nil {
		t.Error("Set(\"90\") accepted")
	}
	out, err := yaml.Marshal(struct {
		D Duration `yaml:"d"`
	}{Duration(100 * time.Millisecond)})
	if err != nil || string(out) != "d: 100ms\n" {
		t.Errorf("Marshal = %q, %v", out, err)
	}
	var back struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal(out, &back); err != nil || back.D.D() != 100*time.Millisecond {
		t.Errorf("Unmarshal = %v, %v", back.D, err)
	}
	if err := yaml.Unmarshal([]byte("d: [1]\n"), &back); err == nil {
		t.Error("sequence accepted as duration")
	}
	var _ flag.Value = &d
}

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
	if got, want := (Config{}).WorkerCount(), runtime.NumCPU(); got != want {
		t.Errorf("WorkerCount with count 0 = %d, want %d", got, want)
	}
	c := Default()
	c.Worker.Count = 3
	if c.WorkerCount() != 3 {
		t.Errorf("WorkerCount = %d, want 3", c.WorkerCount())
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	cert := writeFile(t, "cert.pem", "x")
	key := writeFile(t, "key.pem", "x")
	missing := filepath.Join(dir, "nope.pem")

	tests := []struct {
		name   string
		mutate func(*Config)
		key    string // "" = must be valid
	}{
		{"listen no port", func(c *Config) { c.Listen = "localhost" }, "listen"},
		{"listen port out of range", func(c *Config) { c.Listen = ":65536" }, "listen"},
		{"unspecified listen ip without announced address ok (auto-detected)", func(c *Config) { c.Worker.ListenIP = "0.0.0.0" }, ""},
		{"drainGrace negative", func(c *Config) { c.DrainGrace = Duration(-time.Second) }, "drainGrace"},
		{"drainGrace zero ok", func(c *Config) { c.DrainGrace = 0 }, ""},
		{"authSecret short", func(c *Config) { c.AuthSecret = "secret" }, "authSecret"},
		{"authSecret ok", func(c *Config) { c.AuthSecret = strings.Repeat("k", 32) }, ""},
		{"origin without scheme", func(c *Config) { c.AllowedOrigins = StringList{"example.com"} }, "allowedOrigins"},
		{"origin with path", func(c *Config) { c.AllowedOrigins = StringList{"https://example.com/app"} }, "allowedOrigins"},
		{"origins ok", func(c *Config) { c.AllowedOrigins = StringList{"https://example.com", "http://localhost:3000"} }, ""},
		{"listenInfos bad ip", func(c *Config) { c.Worker.ListenInfos = ListenInfos{{IP: "host"}} }, "worker.listenInfos"},
		{"listenInfos bad protocol", func(c *Config) { c.Worker.ListenInfos = ListenInfos{{IP: "0.0.0.0", Protocol: "sctp"}} }, "worker.listenInfos"},
		{"listenInfos bad announced", func(c *Config) { c.Worker.ListenInfos = ListenInfos{{IP: "0.0.0.0", AnnouncedAddress: "a b"}} }, "worker.listenInfos"},
		{"listenInfos duplicate", func(c *Config) {
			c.Worker.ListenInfos = ListenInfos{{IP: "10.0.0.1"}, {IP: "10.0.0.1", Protocol: "tcp"}}
		}, "worker.listenInfos"},
		{"listenInfos internal without announced", func(c *Config) { c.Worker.ListenInfos = ListenInfos{{IP: "10.0.0.1", ExposeInternalIP: true}} }, "worker.listenInfos"},
		{"listenInfos per protocol ok", func(c *Config) {
			c.Worker.ListenInfos = ListenInfos{{IP: "0.0.0.0", Protocol: "udp", AnnouncedAddress: "203.0.113.7"},
				{IP: "0.0.0.0", Protocol: "tcp"}, {IP: "::1"}}
		}, ""},
		{"listen port too big", func(c *Config) { c.Listen = ":70000" }, "listen"},
		{"listen port name", func(c *Config) { c.Listen = ":https" }, "listen"},
		{"listen bad host", func(c *Config) { c.Listen = "bad host:80" }, "listen"},
		{"listen ipv6 ok", func(c *Config) { c.Listen = "[::]:443" }, ""},
		{"listen hostname ok", func(c *Config) { c.Listen = "localhost:8080" }, ""},
		{"tls cert only", func(c *Config) { c.TLSCert = cert }, "tlsKey"},
		{"tls key only", func(c *Config) { c.TLSKey = key }, "tlsCert"},
		{"tls cert missing", func(c *Config) { c.TLSCert, c.TLSKey = missing, key }, "tlsCert"},
		{"tls key missing", func(c *Config) { c.TLSCert, c.TLSKey = cert, missing }, "tlsKey"},
		{"tls key is dir", func(c *Config) { c.TLSCert, c.TLSKey = cert, dir }, "tlsKey"},
		{"tls ok", func(c *Config) { c.TLSCert, c.TLSKey = cert, key }, ""},
		{"log level", func(c *Config) { c.LogLevel = "verbose" }, "logLevel"},
		{"log level empty", func(c *Config) { c.LogLevel = "" }, "logLevel"},
		{"count negative", func(c *Config) { c.Worker.Count = -1 }, "worker.count"},
		{"count too many", func(c *Config) { c.Worker.Count = 65 }, "worker.count"},
		{"count max ok", func(c *Config) { c.Worker.Count = 64 }, ""},
		{"redis ok", func(c *Config) { c.Redis.URL = "redis://:pw@127.0.0.1:6379/2" }, ""},
		{"rediss ok", func(c *Config) { c.Redis.URL = "rediss://redis.example:6380" }, ""},
		{"redis bad scheme", func(c *Config) { c.Redis.URL = "http://127.0.0.1:6379" }, "redis.url"},
		{"redis no host", func(c *Config) { c.Redis.URL = "redis:///0" }, "redis.url"},
		{"redis bad db", func(c *Config) { c.Redis.URL = "redis://h:6379/x" }, "redis.url"},
		{"node id ok", func(c *Config) { c.NodeID = "node-a.1" }, ""},
		{"node id bad", func(c *Config) { c.NodeID = "node a" }, "nodeId"},
		{"rtcPort zero", func(c *Config) { c.Worker.RtcPort = 0 }, "worker.rtcPort"},
		{"rtcPort too big", func(c *Config) { c.Worker.RtcPort = 70000 }, "worker.rtcPort"},
		{"rtcPort range overflow", func(c *Config) { c.Worker.Count = 2; c.Worker.RtcPort = 65535 }, "worker.rtcPort"},
		{"rtcPort range edge ok", func(c *Config) { c.Worker.Count = 2; c.Worker.RtcPort = 65534 }, ""},
		{"rtcPort per-cpu overflow", func(c *Config) { c.Worker.RtcPort = 65536 - runtime.NumCPU() + 1 }, "worker.rtcPort"},
		{"listenIp hostname", func(c *Config) { c.Worker.ListenIP = "localhost" }, "worker.listenIp"},
		{"listenIp empty", func(c *Config) { c.Worker.ListenIP = "" }, "worker.listenIp"},
		{"listenIp any ok", func(c *Config) { c.Worker.ListenIP = "0.0.0.0"; c.Worker.AnnouncedAddress = "203.0.113.7" }, ""},
		{"announced scheme", func(c *Config) { c.Worker.AnnouncedAddress = "https://example.com" }, "worker.announcedAddress"},
		{"announced port", func(c *Config) { c.Worker.AnnouncedAddress = "example.com:443" }, "worker.announcedAddress"},
		{"announced space", func(c *Config) { c.Worker.AnnouncedAddress = "example .com" }, "worker.announcedAddress"},
		{"announced bad label", func(c *Config) { c.Worker.AnnouncedAddress = "-example.com" }, "worker.announcedAddress"},
		{"announced hostname ok", func(c *Config) { c.Worker.AnnouncedAddress = "media.example.com" }, ""},
		{"announced ipv4 ok", func(c *Config) { c.Worker.AnnouncedAddress = "203.0.113.7" }, ""},
		{"announced ipv6 ok", func(c *Config) { c.Worker.AnnouncedAddress = "2001:db8::1" }, ""},
		{"worker log level info", func(c *Config) { c.Worker.LogLevel = "info" }, "worker.logLevel"},
		{"worker log level none ok", func(c *Config) { c.Worker.LogLevel = "none" }, ""},
		{"respawnMinDelay zero", func(c *Config) { c.Worker.RespawnMinDelay = 0 }, "worker.respawnMinDelay"},
		{"respawnMaxDelay below min", func(c *Config) { c.Worker.RespawnMaxDelay = Duration(time.Millisecond) }, "worker.respawnMaxDelay"},
		{"respawn equal ok", func(c *Config) { c.Worker.RespawnMaxDelay = c.Worker.RespawnMinDelay }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c)
			err := c.Validate()
			if tt.key == "" {
				if err != nil {
					t.Errorf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.key+": ") {
				t.Errorf("err = %v, want one naming %s", err, tt.key)
			}
		})
	}

	// All problems are reported together, and Load runs Validate.
	c := Default()
	c.LogLevel = "loud"
	c.Worker.RtcPort = 70000
	c.Worker.ListenIP = "nowhere"
	err := c.Validate()
	for _, k := range []string{"logLevel: ", "worker.rtcPort: 70000 is not a port (1-65535)", "worker.listenIp: "} {
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("joined error %v lacks %q", err, k)
		}
	}
	if _, err := Load([]string{"-rtc-port", "70000"}, env(nil)); err == nil || !strings.Contains(err.Error(), "worker.rtcPort") {
		t.Errorf("Load with -rtc-port 70000: err = %v", err)
	}
}

func TestListenInfosSyntax(t *testing.T) {
	var l ListenInfos
	if err := l.Set(" 0.0.0.0=203.0.113.7, tcp:10.0.0.5 ,UDP:::1=media.example.com+internal,"); err != nil {
		t.Fatal(err)
	}
	want := ListenInfos{
		{IP: "0.0.0.0", AnnouncedAddress: "203.0.113.7"},
		{Protocol: "tcp", IP: "10.0.0.5"},
		{Protocol: "udp", IP: "::1", AnnouncedAddress: "media.example.com", ExposeInternalIP: true},
	}
	if !reflect.DeepEqual(l, want) {
		t.Fatalf("Set = %+v, want %+v", l, want)
	}
	if got := l.String(); got != "0.0.0.0=203.0.113.7,tcp:10.0.0.5,udp:::1=media.example.com+internal" {
		t.Errorf("String = %q", got)
	}
	if err := l.Set("=1.2.3.4"); err == nil {
		t.Error("entry without IP accepted")
	}
	if err := l.Set(""); err != nil || l != nil {
		t.Errorf("Set(\"\") = %v, %v; want nil list", l, err)
	}

	// The same through env, flags and YAML (a sequence of mappings, or the flag syntax).
	c, err := Load([]string{"-listen-infos", "tcp:10.0.0.5"}, env(map[string]string{
		"MEDIASOUP_SERVER_WORKER_LISTEN_INFOS": "0.0.0.0=203.0.113.7", "MEDIASOUP_SERVER_ALLOWED_ORIGINS": "https://a.example, https://b.example"}))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Worker.ListenInfos, ListenInfos{{Protocol: "tcp", IP: "10.0.0.5"}}) {
		t.Errorf("flag over env: %+v", c.Worker.ListenInfos)
	}
	if !reflect.DeepEqual(c.AllowedOrigins, StringList{"https://a.example", "https://b.example"}) {
		t.Errorf("allowedOrigins from env: %#v", c.AllowedOrigins)
	}
	file := writeFile(t, "cfg.yaml", `
allowedOrigins: [https://a.example]
worker:
  listenInfos:
    - {ip: 192.168.1.10, announcedAddress: 203.0.113.7, exposeInternalIp: true}
    - ip: "::"
      protocol: udp
`)
	c, err = Load([]string{"-config", file}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := (ListenInfos{{IP: "192.168.1.10", AnnouncedAddress: "203.0.113.7", ExposeInternalIP: true}, {Protocol: "udp", IP: "::"}}); !reflect.DeepEqual(c.Worker.ListenInfos, want) {
		t.Errorf("yaml listenInfos = %+v, want %+v", c.Worker.ListenInfos, want)
	}
	if !reflect.DeepEqual(c.AllowedOrigins, StringList{"https://a.example"}) {
		t.Errorf("yaml allowedOrigins = %#v", c.AllowedOrigins)
	}
	bad := writeFile(t, "bad.yaml", "worker:\n  listenInfos:\n    - {ip: 10.0.0.1, announced: x}\n")
	if _, err := Load([]string{"-config", bad}, env(nil)); err == nil || !strings.Contains(err.Error(), "announced") {
		t.Errorf("unknown listen info key: err = %v", err)
	}
}

func TestEffectiveListenInfos(t *testing.T) {
	c := Default()
	c.Worker.ListenIP, c.Worker.AnnouncedAddress = "0.0.0.0", "203.0.113.7"
	if got := c.EffectiveListenInfos(); !reflect.DeepEqual(got, []ListenInfo{{IP: "0.0.0.0", AnnouncedAddress: "203.0.113.7"}}) {
		t.Errorf("from listenIp: %+v", got)
	}
	c.Worker.ListenInfos = ListenInfos{{IP: "10.0.0.1", Protocol: "udp"}}
	if got := c.EffectiveListenInfos(); !reflect.DeepEqual(got, []ListenInfo{{IP: "10.0.0.1", Protocol: "udp"}}) {
		t.Errorf("listenInfos win: %+v", got)
	}
}

func TestAutoAnnounce(t *testing.T) {
	cidr := func(s string) net.Addr {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	host := func() ([]net.Addr, error) {
		return []net.Addr{cidr("127.0.0.1/8"), cidr("::1/128"), cidr("fe80::1/64"), cidr("169.254.1.1/16"),
			cidr("192.168.1.10/24"), cidr("2001:db8::10/64"), cidr("10.0.0.5/8")}, nil
	}
	in := []ListenInfo{
		{IP: "0.0.0.0"},
		{IP: "0.0.0.0", Protocol: "tcp", AnnouncedAddress: "media.example.com"},
		{IP: "::", Protocol: "udp"},
		{IP: "127.0.0.1"},
	}
	out, notes, err := AutoAnnounce(in, host)
	if err != nil {
		t.Fatal(err)
	}
	want := []ListenInfo{
		{IP: "0.0.0.0", AnnouncedAddress: "192.168.1.10"},
		{IP: "0.0.0.0", Protocol: "tcp", AnnouncedAddress: "media.example.com"},
		{IP: "::", Protocol: "udp", AnnouncedAddress: "2001:db8::10"},
		{IP: "127.0.0.1"},
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("AutoAnnounce = %+v, want %+v", out, want)
	}
	if len(notes) != 2 || notes[0] != (Announcement{"0.0.0.0", "192.168.1.10"}) {
		t.Errorf("notes = %+v", notes)
	}
	if in[0].AnnouncedAddress != "" {
		t.Error("AutoAnnounce changed its input")
	}
	loopbackOnly := func() ([]net.Addr, error) { return []net.Addr{cidr("127.0.0.1/8")}, nil }
	if _, _, err := AutoAnnounce([]ListenInfo{{IP: "0.0.0.0"}}, loopbackOnly); err == nil || !strings.Contains(err.Error(), "announcedAddress") {
		t.Errorf("no usable address: err = %v", err)
	}
	// Nothing to detect: the host's addresses are not even listed.
	if _, notes, err := AutoAnnounce([]ListenInfo{{IP: "127.0.0.1"}}, func() ([]net.Addr, error) { panic("listed") }); err != nil || notes != nil {
		t.Errorf("no unspecified IP: %v %v", notes, err)
	}
}
