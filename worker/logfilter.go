package worker

import (
	"context"
	"log/slog"
	"strings"
)

// quietHandler demotes what mediasoup-go and the worker log at ERROR for
// races that are normal when peers come and go, so that ERROR in our log
// means something went wrong:
//
//   - mediasoup-go's "received an unhandled notification": the worker notified
//     an object mediasoup-go has not subscribed yet (a consumer whose producer
//     paused while it was being created: ConsumeContext syncs the state) or
//     has just unsubscribed (closed) → DEBUG;
//   - mediasoup-go's "request failed" with error NotFoundError, and the
//     worker's own "throwing MediaSoupNotFoundError" line that goes with it: a
//     request to an object the worker had just closed (e.g. resuming a
//     consumer whose producer closed meanwhile); the caller gets ErrNotFound
//     and handles it → DEBUG;
//   - mediasoup-go's "received an unhandled response": the answer to a
//     request whose caller gave up (its context ended) → WARN, since a slow
//     worker is worth knowing about.
//
// Everything else keeps its level.
//
// It also keeps the attributes mediasoup-go adds to every object's logger
// (logger.With("consumerId", …) for each consumer, transport, producer)
// until a record is logged: zap encodes them at once otherwise, an
// allocation per object that a server logging at INFO never prints.
type quietHandler struct {
	slog.Handler
	attrs []slog.Attr // added by WithAttrs, not yet given to Handler
}

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		if lvl, ok := demoted(r); ok {
			if !h.Handler.Enabled(ctx, lvl) {
				return nil
			}
			r.Level = lvl
		}
	}
	return h.resolved().Handle(ctx, r)
}

// resolved is Handler with the pending attributes.
func (h quietHandler) resolved() slog.Handler {
	if len(h.attrs) == 0 {
		return h.Handler
	}
	return h.Handler.WithAttrs(h.attrs)
}

func (h quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return quietHandler{h.Handler, append(h.attrs[:len(h.attrs):len(h.attrs)], attrs...)}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{Handler: h.resolved().WithGroup(name)}
}

// demoted is the level an ERROR record of a known benign kind is logged at.
func demoted(r slog.Record) (slog.Level, bool) {
	switch {
	case r.Message == "received an unhandled notification":
		return slog.LevelDebug, true
	case r.Message == "received an unhandled response":
		return slog.LevelWarn, true
	case r.Message == "request failed":
		notFound := false
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "error" && a.Value.String() == "NotFoundError" {
				notFound = true
				return false
			}
			return true
		})
		return slog.LevelDebug, notFound
	case strings.Contains(r.Message, "throwing MediaSoupNotFoundError"):
		return slog.LevelDebug, true
	}
	return 0, false
}
