package signaling

import "net/http"

// mountBroadcasters adds the broadcaster HTTP API of PROTOCOL.md §7.
func mountBroadcasters(mux *http.ServeMux, opts Options) {}
