import ArgumentParser

/// The one Capstan binary.
@main
struct Capstan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capstan",
        abstract: "A container orchestrator whose every moving part is a plugin.",
        subcommands: [PluginsCommand.self, ConformanceCommand.self, SimulateCommand.self])
}
