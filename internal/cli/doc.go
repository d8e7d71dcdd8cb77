// Package cli is the start-up skeleton tickbox's daemons and command-line
// programs share, so that each starts, logs, stops and exits the same way.
//
//   - Exit statuses: [ExitOK], [ExitFailure], [ExitUsage]; an error
//     carries its status as an [ExitError], made with [Exit], [Usage] or
//     [Plain], and read back with [Code].
//   - Running a program: [Main] and [Exec] call a [RunFunc],
//     run(ctx, args, stdout, stderr) error, print its error once and turn
//     it into the exit status. [ParseFlags] makes flag errors usage
//     errors.
//   - Signals: SIGINT and SIGTERM cancel the context [Main] passes
//     ([SignalContext]; [Signal] says which one did); [Catch] holds any
//     other signal a daemon acts on (SIGHUP, SIGUSR1, SIGUSR2) for its
//     handler.
//   - Logging: [LogFlags] adds -log-level (and the program's -v
//     spellings) to a flag set; [Logging.Level] and [Logging.Logger]
//     give the level and a text logger, [Logging.Wrap] wraps a handler
//     of the program's own; both keep the recent lines in
//     [Logging.Ring] for the log-get control command.
package cli
