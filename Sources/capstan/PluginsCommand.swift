import ArgumentParser
import CapstanSDK
import Foundation
import PluginHost

/// `capstan plugins …`: what is loaded, and why a plugin was refused.
struct PluginsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins",
        abstract: "List, inspect, verify and test plugins.",
        subcommands: [List.self, Inspect.self, Verify.self, PluginTestCommand.self, PluginCallCommand.self],
        aliases: ["plugin"])

    struct ConfigOptions: ParsableArguments {
        @Option(name: .shortAndLong, help: "The operator config (capstan.yaml). Default: the in-tree plugins next to this binary.")
        var config: String?

        @Flag(help: "Print JSON instead of a table.")
        var json = false

        /// Loads the plugins the config names. They are given a temporary state directory,
        /// removed before this returns: listing or verifying creates nothing in the configured
        /// one (plugins make their folders there when they are instantiated).
        func load() throws -> (HostConfiguration, PluginHost) {
            let configuration: HostConfiguration
            if let config {
                configuration = try HostConfiguration.load(path: config)
            } else {
                configuration = HostConfiguration.builtIn(executableDirectory: ExecutablePath.directory, stateDirectory: FileManager.default.currentDirectoryPath + "/.capstan")
            }
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("capstan-plugins-\(UUID().uuidString.prefix(8))")
            defer { try? FileManager.default.removeItem(at: scratch) }
            var loading = configuration
            loading.stateDirectory = scratch.path
            let host = PluginHost.load(loading, log: { level, message in
                if level >= .warning { FileHandle.standardError.write(Data("\(message)\n".utf8)) }
            })
            return (configuration, host)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Load the configured plugins and show each one: loaded, or why refused.")
        @OptionGroup var options: ConfigOptions

        func run() throws {
            let (configuration, host) = try options.load()
            print(options.json ? try PluginTable.json(host.reports) : PluginTable.render(host, configuration: configuration))
        }
    }

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check one plugin file and show everything it declares.")
        @Argument(help: "The plugin shared library (.so).") var path: String
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
            let report = PluginHost.inspect(path: absolute)
            print(json ? try PluginTable.json([report]) : PluginTable.detail(report))
            if !report.isLoaded { throw ExitCode(1) }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Dry run: load everything the config names; exit 1 if anything is refused.")
        @OptionGroup var options: ConfigOptions

        func run() throws {
            let (configuration, host) = try options.load()
            print(options.json ? try PluginTable.json(host.reports) : PluginTable.render(host, configuration: configuration))
            if !host.isClean {
                FileHandle.standardError.write(Data("capstan: \(configuration.source): some plugins were refused\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}

enum ExecutablePath {
    /// The folder of the running binary (where `swift build` also puts the plugin .so files).
    static var directory: String {
        let path = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: path).deletingLastPathComponent().path
    }
}
