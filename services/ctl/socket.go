package ctl

import "github.com/tickbox-fw/tickbox/internal/unixsock"

// The socket rules live in internal/unixsock, shared with the MCTP demux;
// these names keep front-end and daemon code in the control plane's terms.
type (
	// SocketSpec says where and how a front end listens.
	SocketSpec = unixsock.Spec
	// StreamOptions are the limits of a connection-oriented front end.
	StreamOptions = unixsock.StreamOptions
	// PeerPolicy decides which peers may use an abstract socket.
	PeerPolicy = unixsock.PeerPolicy
)

// DefaultMaxConns is the default limit of concurrent connections per
// front end.
const DefaultMaxConns = unixsock.DefaultMaxConns
