import ArgumentParser

/// A command that only reads files and prints: it writes no file, starts no process and
/// changes no process-wide state, so it can run in-process any number of times (the
/// command-line fuzzer runs these after parsing; the others it parses and validates only).
public protocol ReadOnlyCommand: ParsableCommand {}

extension BudgetCommand: ReadOnlyCommand {}
extension PolicyCommand.List: ReadOnlyCommand {}
extension PolicyCommand.Show: ReadOnlyCommand {}
extension InspectCommand: ReadOnlyCommand {}
extension EnvCommand: ReadOnlyCommand {}
