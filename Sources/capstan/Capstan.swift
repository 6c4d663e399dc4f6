import ArgumentParser
import Foundation

/// The one Capstan binary.
@main
struct Capstan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capstan",
        abstract: "A container orchestrator whose every moving part is a plugin.",
        subcommands: [
            DevCommand.self, ServerCommand.self, AgentCommand.self,
            ApplyCommand.self, GetCommand.self, DescribeCommand.self, DeleteCommand.self, LogsCommand.self,
            EventsCommand.self, ScaleCommand.self, RolloutCommand.self,
            PluginsCommand.self, ConformanceCommand.self, SimulateCommand.self, StoreCommand.self, TokenCommand.self,
        ])

    /// As ArgumentParser's, except that usage errors (an unknown flag or kind, a missing
    /// argument, a value out of range) exit 2, as docs/cli.md says, not 64.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(CLIExit.usage)
            }
            exit(withError: error)
        }
    }
}
