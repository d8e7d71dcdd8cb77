// Package metrics turns the box's control plane into Prometheus metrics.
//
// A Collector asks every daemon the hub fronts, at scrape time and in
// parallel, for the numbers its Kea commands already expose (status-get
// and version-get through the hub's ServicesGet; ptpd's instances-get,
// mctpd's stats-get and mdiod's links-get through Command) and turns
// the replies into series named tickbox_*. The daemons stay small: they
// know nothing of Prometheus. A daemon that does not answer gives
// tickbox_service_up 0 and no other series; a reply that does not
// decode is logged and skipped, and the rest of the scrape goes on.
//
// Handler serves the collector with its own registry (never the
// process-wide default one) in Prometheus's text or protobuf format.
// services/ctl/README.md lists every series.
package metrics
