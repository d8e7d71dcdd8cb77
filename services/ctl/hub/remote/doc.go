// Package remote gives the hub's registry the commands that reach into
// the daemons the hub fronts, so that every front end of the hub (its
// console above all) drives them without a copy of any command logic:
//
//   - one command per configured service, "SERVICE CMD ARGS...": the
//     daemon's command CMD, its words bound to named arguments with the
//     daemon's own schema (commands-get, rebuilt with
//     ctl.NewCommandFromSchema, so refusals read as on the daemon's
//     console), run over the daemon's Kea socket (hub.Command); its
//     Help hook lists the daemon's commands for "? SERVICE";
//   - log SERVICE: follows the daemon's log by polling log-get with a
//     cursor until cancelled, saying when the daemon goes down, comes
//     back or restarts;
//   - events: follows the appliance agent's and mdiod's link events
//     (their events-get with cursors), merged in time order, each line
//     naming its source.
//
// A daemon's schema is fetched on first use and again after the daemon
// was unreachable or answered that a command is unknown (a restart may
// have changed its commands).
package remote
