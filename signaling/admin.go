package signaling

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/mediasoup-server/mediasoup-server/cluster"
	"github.com/mediasoup-server/mediasoup-server/room"
)

// The admin view: GET /admin/rooms (an admin token when auth is on).

type adminRooms struct {
	Time     time.Time   `json:"time"`
	Draining bool        `json:"draining"`
	Rooms    []adminRoom `json:"rooms"`
}

type adminRoom struct {
	ID      string        `json:"id"`
	Routers []adminRouter `json:"routers"`
	Peers   []adminPeer   `json:"peers"`
}

// adminRouter is one router of a room and the worker it lives on.
type adminRouter struct {
	ID          string `json:"id"`
	WorkerIndex int    `json:"workerIndex"`
	WorkerPid   int    `json:"workerPid"`
}

type adminPeer struct {
	ID            string      `json:"id"`
	DisplayName   string      `json:"displayName"`
	Device        room.Device `json:"device"`
	Joined        bool        `json:"joined"`
	Broadcaster   bool        `json:"broadcaster"`
	Transports    int         `json:"transports"`
	Producers     int         `json:"producers"`
	Consumers     int         `json:"consumers"`
	DataProducers int         `json:"dataProducers"`
	DataConsumers int         `json:"dataConsumers"`
}

// writeAdminRooms answers every room, sorted by id, with its routers (the
// first one first; a room spread over several workers has one per worker)
// and its peers (sorted by id). A room still creating its router lists none.
func (h *Handler) writeAdminRooms(w http.ResponseWriter, rooms *room.Manager) {
	body := adminRooms{Time: time.Now().UTC(), Draining: h.Draining(), Rooms: []adminRoom{}}
	if rooms != nil {
		for _, r := range rooms.Rooms() {
			ar := adminRoom{ID: r.ID(), Routers: []adminRouter{}, Peers: []adminPeer{}}
			for _, rt := range r.ReadyRouters() {
				ar.Routers = append(ar.Routers, adminRouter{ID: rt.Id(), WorkerIndex: rt.Worker.Index(), WorkerPid: rt.Pid})
			}
			for _, p := range r.Snapshot() {
				info, n := p.Info, p.Counts
				ar.Peers = append(ar.Peers, adminPeer{
					ID: info.ID, DisplayName: info.DisplayName, Device: info.Device, Joined: p.Joined,
					Broadcaster: p.Broadcaster, Transports: n.Transports, Producers: n.Producers,
					Consumers: n.Consumers, DataProducers: n.DataProducers, DataConsumers: n.DataConsumers,
				})
			}
			slices.SortFunc(ar.Peers, func(a, b adminPeer) int { return cmp.Compare(a.ID, b.ID) })
			body.Rooms = append(body.Rooms, ar)
		}
	}
	slices.SortFunc(body.Rooms, func(a, b adminRoom) int { return cmp.Compare(a.ID, b.ID) })
	writeJSON(w, http.StatusOK, body)
}

type adminCluster struct {
	Time  time.Time          `json:"time"`
	Node  string             `json:"node"` // the node answering
	Nodes []cluster.NodeInfo `json:"nodes"`
}

// writeAdminCluster answers GET /admin/cluster: the live nodes (sorted by
// id) with their load and the rooms each owns; 503 when the registry
// cannot be read.
func (h *Handler) writeAdminCluster(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), locateTimeout)
	defer cancel()
	nodes, err := h.placement.Nodes(ctx)
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, "cluster: "+err.Error())
		return
	}
	slices.SortFunc(nodes, func(a, b cluster.NodeInfo) int { return cmp.Compare(a.ID, b.ID) })
	writeJSON(w, http.StatusOK, adminCluster{Time: time.Now().UTC(), Node: h.placement.NodeID(), Nodes: nodes})
}
