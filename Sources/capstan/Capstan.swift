import ArgumentParser

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
}
