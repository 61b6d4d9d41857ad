package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/mediasoup-server/mediasoup-server/config"
	"github.com/mediasoup-server/mediasoup-server/signaling"
)

// runToken is `mediasoup-server token`: it prints a token signed with the
// server's auth secret.
func runToken(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mediasoup-server token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: mediasoup-server token [-secret S] (-room R -peer P | -admin) [-ttl 1h]

Prints an HS256 JWT for a server started with the same auth secret:
  -room R -peer P   opens ws(s)://HOST/?roomId=R&peerId=P&token=TOKEN, and drives
                    broadcaster P of room R (Authorization: Bearer TOKEN)
  -admin            opens /admin/rooms (Authorization: Bearer TOKEN)

`)
		fs.PrintDefaults()
	}
	envName := config.EnvPrefix + "AUTH_SECRET"
	secret := fs.String("secret", "", "the server's auth `SECRET` (default: $"+envName+")")
	roomID := fs.String("room", "", "room `ID` the token is for")
	peerID := fs.String("peer", "", "peer (or broadcaster) `ID` the token is for")
	admin := fs.Bool("admin", false, "an admin token (for /admin/)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "mediasoup-server token: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q", fs.Arg(0))
	}
	if *secret == "" {
		*secret = getenv(envName)
	}
	switch {
	case *secret == "":
		return fail("no secret: pass -secret or set %s", envName)
	case len(*secret) < config.MinAuthSecretLen:
		return fail("the secret must be at least %d bytes, as the server requires", config.MinAuthSecretLen)
	case !*admin && (*roomID == "" || *peerID == ""):
		return fail("give -room and -peer (or -admin)")
	case *ttl <= 0:
		return fail("-ttl must be > 0")
	}
	tok, err := signaling.IssueToken(*secret, signaling.Claims{Room: *roomID, Peer: *peerID, Admin: *admin}, *ttl)
	if err != nil {
		return fail("%v", err)
	}
	fmt.Fprintln(stdout, tok)
	return 0
}
