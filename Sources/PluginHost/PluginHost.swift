import CapstanSDK
import Foundation

/// Loads the plugins a configuration names and creates them: the one place plugins enter a
/// Capstan process. Global setup: call ``load(_:nodeName:log:)`` once per process.
public struct PluginHost: Sendable {
    /// The created plugins.
    public let registry: PluginRegistry
    /// One report per configured file, in config order.
    public let reports: [LibraryReport]
    /// Config-level problems found after loading (a default naming an unloaded plugin).
    public let problems: [ValidationProblem]

    /// True when every library and plugin loaded and the defaults are valid.
    public var isClean: Bool { problems.isEmpty && reports.allSatisfy(\.isLoaded) }

    /// Loads every configured file, creates its plugins, and checks the defaults.
    ///
    /// After the library checks of ``PluginLoader``, each registered plugin must have a unique
    /// name, then its `config` must decode and validate; only then is it created and registered.
    public static func load(_ configuration: HostConfiguration, nodeName: String? = nil, log: @escaping @Sendable (PluginLogLevel, String) -> Void = { _, _ in }) -> PluginHost {
        let loader = PluginLoader(log: log)
        let registry = PluginRegistry()
        var reports: [LibraryReport] = []
        for (index, entry) in configuration.plugins.enumerated() {
            let path: String
            switch configuration.resolve(entry) {
            case .success(let resolved): path = resolved
            case .failure(let failure):
                var report = LibraryReport(path: entry.name ?? entry.path ?? "?")
                report.failure = failure
                reports.append(report)
                continue
            }
            var opened = loader.open(path: path, pinnedSHA256: entry.sha256)
            for (position, registration) in opened.registrations.enumerated() {
                opened.report.plugins[position].failure = create(registration, from: path, config: entry.config, configPath: "plugins[\(index)].config", in: registry, configuration: configuration, nodeName: nodeName, log: log)
            }
            reports.append(opened.report)
        }
        var problems: [ValidationProblem] = []
        for kind in PluginKind.allCases {
            guard let name = configuration.defaults[kind] else { continue }
            let loaded = registry.entries.filter { $0.kind == kind }.map(\.name)
            if let entry = registry.entry(named: name), entry.kind != kind {
                problems.append(ValidationProblem(path: "defaults.\(kind)", message: "\"\(name)\" is a \(entry.kind) plugin, not a \(kind) plugin"))
            } else if !loaded.contains(name) {
                problems.append(ValidationProblem(path: "defaults.\(kind)", message: "\"\(name)\" is not loaded; loaded \(kind) plugins: \(loaded.isEmpty ? "none" : loaded.joined(separator: ", "))"))
            } else {
                registry.setDefault(name, for: kind)
            }
        }
        return PluginHost(registry: registry, reports: reports, problems: problems)
    }

    /// Checks one plugin file without a config: every library check, then creates its plugins
    /// with their default configuration in a throwaway registry.
    public static func inspect(path: String, stateDirectory: String = NSTemporaryDirectory() + "capstan-inspect") -> LibraryReport {
        let configuration = HostConfiguration(pluginPaths: [], plugins: [.init(path: path)], stateDirectory: stateDirectory, source: "inspect")
        return load(configuration).reports[0]
    }

    private static func create(_ registration: PluginRegistration, from path: String, config: JSONValue?, configPath: String, in registry: PluginRegistry, configuration: HostConfiguration, nodeName: String?, log: @escaping @Sendable (PluginLogLevel, String) -> Void) -> LoadFailure? {
        if let existing = registry.entry(named: registration.name) {
            return LoadFailure(.duplicateName, "a plugin named \"\(registration.name)\" is already loaded from \(existing.library); plugin names must be unique")
        }
        let stateDirectory = URL(fileURLWithPath: configuration.stateDirectory).appendingPathComponent("plugins/\(registration.name)").path
        let name = registration.name
        let context = PluginContext(pluginName: name, stateDirectory: stateDirectory, nodeName: nodeName) { level, message in
            log(level, "[\(name)] \(message)")
        }
        do {
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
            let instance = try registration.make(PluginConfigurationInput(json: config?.jsonBytes, path: configPath), context)
            try registry.add(PluginRegistry.Entry(name: registration.name, kind: registration.kind, library: path, instance: instance))
            return nil
        } catch let error as LoadFailure {
            return error
        } catch let error as PluginError where error.code == .invalidConfiguration {
            return LoadFailure(.configuration, (["plugin \"\(registration.name)\" has an invalid configuration:"] + error.problems.map { "  \($0)" }).joined(separator: "\n"))
        } catch {
            return LoadFailure(.configuration, "plugin \"\(registration.name)\" could not be created: \(error)")
        }
    }
}
