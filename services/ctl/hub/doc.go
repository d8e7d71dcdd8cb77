// Package hub makes one process the box's control point, in the manner
// of Kea's Control Agent: a request that names a service is forwarded to
// that daemon's Kea control socket, and the answers come back in a list.
//
//   - Config, ParseConfig and LoadConfig read the daemons it fronts from
//     a file in the Control Agent's own shape ("control-sockets").
//   - New makes a Hub; Forward sends one raw request (it fits
//     kea.Options.Forward), Command one decoded command, with one retry
//     when the daemon is restarting and a configured timeout.
//   - ServicesGet reports each daemon's reachability, pid, uptime and
//     version; Commands registers services-get in the hub's registry.
package hub
