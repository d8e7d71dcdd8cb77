// Package web is the control hub's status page: one HTML document that
// shows every daemon the hub fronts and follows them live.
//
// The pieces:
//
//   - Source is what the page asks, the subset of *hub.Hub it uses
//     (Services, ServicesGet, Command).
//   - New(Source, Options) returns a Page; Page.Run is its poller, which
//     asks the hub every Options.Interval (1 s) for services-get, ptpd's
//     instances-get, mctpd's endpoints-get, routes-get and stats-get,
//     mdiod's links-get, hw-info-get (once; phy_status per port for an
//     mdiod without links-get) and events-get (with a since cursor), and
//     the appliance's events-get. Page.Poll is one such round.
//   - Snapshot is what a round found, as the page and the JSON endpoint
//     show it. A daemon that is down or answers an error has its error
//     text in its section; the other sections are unaffected.
//   - History keeps the selected PTP instance's offset and frequency
//     adjustment for Options.History (10 minutes), in a ring of bounded
//     size; the last Options.Events link and hotplug events are kept.
//   - Page.Handler serves GET / (the page, with its CSS, script and uPlot
//     inlined, and the current snapshot embedded), GET api/snapshot (the
//     snapshot as JSON, ?since=T for only the newer history) and GET
//     api/events (server-sent events, one snapshot per round). The page
//     falls back to polling api/snapshot when the event stream fails.
//   - Reply decoding is lenient (decode.go): each field is taken when it
//     has the expected type and skipped otherwise, so that a malformed
//     reply shows as missing values or an error, never a broken page.
//
// The plots use uPlot, vendored under assets/ (see assets/refresh.sh).
// The page does no authentication; whoever mounts Handler does.
package web
