// Package hotplug is the logic of the appliance's netlink hotplug agent:
// it watches the kernel's link table, coalesces bursts of link messages
// into net insert and remove events, and delivers them as sfptpd control
// datagrams ("interfaceinsert=IF", "interfaceremove=IF") to one or more
// daemons.
//
// The pieces are separate so that each can be tested without a kernel:
//   - Patterns decides which interfaces are ignored;
//   - Coalescer turns a stream of link updates into net changes, with an
//     injected clock;
//   - Target is a bounded, ordered, retrying delivery queue for one socket;
//   - EventLog keeps the recent events for the events-get command;
//   - Agent ties them to a Source (netlink in production) and to a ctl
//     registry.
package hotplug
