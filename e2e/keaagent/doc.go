// Package keaagent tests tickbox's daemons behind ISC Kea's own Control
// Agent (kea-ctrl-agent) and kea-shell: the agent, configured with a
// daemon's Kea socket as a control socket, must forward every request
// and get the answer the daemon gives on its socket directly, as it does
// with Kea's own daemons.
//
// The tests start ctl serve, ptpd (on a virtual clock), mctpd (null
// binding), mdiod (simulated PHYs) and the appliance agent on temporary
// sockets, and the Control Agent on loopback with a port the test
// allocates. ./test.sh installs kea-ctrl-agent and python3-kea-connector
// (which kea-shell needs); without them the tests are skipped, or fail
// under CI=true.
package keaagent
