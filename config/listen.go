package config

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"gopkg.in/yaml.v3"
)

// StringList is a list of strings that reads from YAML as a sequence (or one
// comma-separated string) and from flags and environment variables as a
// comma-separated string. Empty items are dropped; an empty list is nil.
type StringList []string

// String joins the list with commas (flag.Value).
func (l StringList) String() string { return strings.Join(l, ",") }

// Set replaces the list with the comma-separated items of s (flag.Value).
func (l *StringList) Set(s string) error {
	var out StringList
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	*l = out
	return nil
}

// UnmarshalYAML reads a sequence of strings or one comma-separated string.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		return l.Set(n.Value)
	case yaml.SequenceNode:
		var items []string
		if err := n.Decode(&items); err != nil {
			return err
		}
		return l.Set(strings.Join(items, ","))
	}
	return fmt.Errorf("line %d: expected a list of strings", n.Line)
}

// ListenInfo is one address the WebRtcServers (and broadcasters' plain
// transports) bind, with what is put in ICE candidates for it.
type ListenInfo struct {
	// Protocol is "udp", "tcp", or "" for both.
	Protocol string `yaml:"protocol"`
	// IP the sockets bind; 0.0.0.0 or :: binds every interface.
	IP string `yaml:"ip"`
	// AnnouncedAddress is the IP or hostname put in ICE candidates instead of
	// IP. Empty with an unspecified IP: the first non-loopback address of
	// the host (see AutoAnnounce).
	AnnouncedAddress string `yaml:"announcedAddress"`
	// ExposeInternalIP also offers IP itself as a candidate when
	// AnnouncedAddress is set (LAN clients and remote ones alike).
	ExposeInternalIP bool `yaml:"exposeInternalIp"`
}

// String formats i as in a -listen-infos item: [udp:|tcp:]IP[=ANNOUNCED][+internal].
func (i ListenInfo) String() string {
	s := i.IP
	if i.Protocol != "" {
		s = i.Protocol + ":" + s
	}
	if i.AnnouncedAddress != "" {
		s += "=" + i.AnnouncedAddress
	}
	if i.ExposeInternalIP {
		s += "+internal"
	}
	return s
}

// ListenInfos is worker.listenInfos: a YAML sequence of ListenInfo, or as a
// flag/environment value a comma-separated list of
// [udp:|tcp:]IP[=ANNOUNCED][+internal], e.g.
// "0.0.0.0=203.0.113.7,tcp:10.0.0.5" (the last "+internal" sets
// exposeInternalIp). An empty list is nil.
type ListenInfos []ListenInfo

// String formats the list as the flag syntax (flag.Value).
func (l ListenInfos) String() string {
	parts := make([]string, len(l))
	for i, in := range l {
		parts[i] = in.String()
	}
	return strings.Join(parts, ",")
}

// Set parses the flag syntax (flag.Value). Values are checked by Validate.
func (l *ListenInfos) Set(s string) error {
	var out ListenInfos
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		var in ListenInfo
		lower := strings.ToLower(item)
		for _, p := range []string{"udp:", "tcp:"} {
			if strings.HasPrefix(lower, p) {
				in.Protocol, item = p[:3], item[len(p):]
			}
		}
		if rest, ok := strings.CutSuffix(item, "+internal"); ok {
			in.ExposeInternalIP, item = true, rest
		}
		in.IP, in.AnnouncedAddress, _ = strings.Cut(item, "=")
		if in.IP == "" {
			return fmt.Errorf("%q: missing IP (want [udp:|tcp:]IP[=ANNOUNCED][+internal])", item)
		}
		out = append(out, in)
	}
	*l = out
	return nil
}

// UnmarshalYAML reads a sequence of {protocol, ip, announcedAddress,
// exposeInternalIp} mappings (unknown keys rejected) or a flag-syntax string.
func (l *ListenInfos) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		return l.Set(n.Value)
	case yaml.SequenceNode:
		var out ListenInfos
		for _, item := range n.Content {
			if item.Kind != yaml.MappingNode {
				return fmt.Errorf("line %d: expected a mapping {ip, announcedAddress, protocol, exposeInternalIp}", item.Line)
			}
			known := map[string]bool{"protocol": true, "ip": true, "announcedAddress": true, "exposeInternalIp": true}
			for i := 0; i+1 < len(item.Content); i += 2 {
				if k := item.Content[i].Value; !known[k] {
					return fmt.Errorf("line %d: unknown key %q in a listen info (protocol, ip, announcedAddress, exposeInternalIp)", item.Content[i].Line, k)
				}
			}
			var in ListenInfo
			if err := item.Decode(&in); err != nil {
				return err
			}
			out = append(out, in)
		}
		*l = out
		return nil
	}
	return fmt.Errorf("line %d: expected a list of listen infos", n.Line)
}

// EffectiveListenInfos is worker.listenInfos, or when it is empty the one
// entry made of worker.listenIp and worker.announcedAddress (both protocols).
func (c Config) EffectiveListenInfos() []ListenInfo {
	if len(c.Worker.ListenInfos) > 0 {
		return append([]ListenInfo(nil), c.Worker.ListenInfos...)
	}
	return []ListenInfo{{IP: c.Worker.ListenIP, AnnouncedAddress: c.Worker.AnnouncedAddress}}
}

// validateListenInfos checks worker.listenInfos entries.
func validateListenInfos(infos ListenInfos, bad func(key, format string, a ...any)) {
	const key = "worker.listenInfos"
	seen := map[string]bool{}
	for i, in := range infos {
		ip := net.ParseIP(in.IP)
		switch {
		case in.Protocol != "" && in.Protocol != "udp" && in.Protocol != "tcp":
			bad(key, "entry %d: protocol %q is not udp, tcp or empty (both)", i, in.Protocol)
		case ip == nil:
			bad(key, "entry %d: ip %q is not an IP address", i, in.IP)
		}
		if a := in.AnnouncedAddress; a != "" && net.ParseIP(a) == nil {
			if msg := hostnameProblem(a); msg != "" {
				bad(key, "entry %d: announcedAddress %q %s", i, a, msg)
			}
		}
		if in.ExposeInternalIP && in.AnnouncedAddress == "" {
			bad(key, "entry %d: exposeInternalIp needs an announcedAddress", i)
		}
		if ip == nil {
			continue
		}
		for _, proto := range []string{"udp", "tcp"} {
			if in.Protocol != "" && in.Protocol != proto {
				continue
			}
			k := proto + " " + ip.String()
			if seen[k] {
				bad(key, "entry %d: %s on %s is listed twice (the port is the same for every entry)", i, proto, in.IP)
			}
			seen[k] = true
		}
	}
}

// Announcement tells what AutoAnnounce chose for an entry.
type Announcement struct {
	IP        string // the listen IP (0.0.0.0 or ::)
	Announced string // the address chosen
}

// AutoAnnounce fills in the announced address of every entry that binds an
// unspecified IP (0.0.0.0, ::) without one: ICE candidates with 0.0.0.0 are
// of no use to a client. It picks the first up, non-loopback, non-link-local
// address of the host's interfaces — IPv4 for 0.0.0.0, IPv6 (else IPv4) for
// :: — and reports each choice so that it can be logged. addrs lists the
// host's addresses (net.InterfaceAddrs in production).
func AutoAnnounce(infos []ListenInfo, addrs func() ([]net.Addr, error)) ([]ListenInfo, []Announcement, error) {
	out := append([]ListenInfo(nil), infos...)
	var notes []Announcement
	var cands []net.IP
	loaded := false
	for i, in := range out {
		ip := net.ParseIP(in.IP)
		if ip == nil || !ip.IsUnspecified() || in.AnnouncedAddress != "" {
			continue
		}
		if !loaded {
			as, err := addrs()
			if err != nil {
				return nil, nil, fmt.Errorf("listing the host's addresses to announce for %s: %w", in.IP, err)
			}
			for _, a := range as {
				if n, ok := a.(*net.IPNet); ok {
					cands = append(cands, n.IP)
				} else if a2, ok := a.(*net.IPAddr); ok {
					cands = append(cands, a2.IP)
				}
			}
			loaded = true
		}
		chosen := pickAddress(cands, ip.To4() == nil)
		if chosen == nil {
			return nil, nil, errors.New("worker listens on " + in.IP + " but the host has no non-loopback address to announce: set worker.announcedAddress (-announced-ip) or worker.listenInfos")
		}
		out[i].AnnouncedAddress = chosen.String()
		notes = append(notes, Announcement{IP: in.IP, Announced: chosen.String()})
	}
	return out, notes, nil
}

func pickAddress(cands []net.IP, preferV6 bool) net.IP {
	usable := func(ip net.IP, v4 bool) bool {
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() || ip.IsMulticast() {
			return false
		}
		return (ip.To4() != nil) == v4
	}
	order := []bool{true} // IPv4
	if preferV6 {
		order = []bool{false, true}
	}
	for _, v4 := range order {
		for _, ip := range cands {
			if usable(ip, v4) {
				return ip
			}
		}
	}
	return nil
}
