import CapstanScheduling
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
    /// The configured scheduling profiles.
    public let profiles: [HostConfiguration.Profile]
    /// StorageClasses the config defines (`storageClasses:`); the server keeps them stored.
    public var storageClasses: [String: StorageClassSpec] = [:]
    /// `defaults.scheduler`: a profile or a scheduler plugin.
    public let defaultScheduler: String?
    /// The configuration's state directory (plugins keep theirs under `plugins/<name>`).
    public let stateDirectory: String

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
        for (index, profile) in configuration.profiles.enumerated() {
            for (position, member) in profile.plugins.enumerated() where registry.scheduler(named: member.name) == nil {
                problems.append(ValidationProblem(path: "profiles[\(index)].plugins[\(position)].name", message: "\"\(member.name)\" is not a loaded scheduler plugin"))
            }
        }
        for kind in PluginKind.allCases {
            guard let name = configuration.defaults[kind] else { continue }
            if kind == .scheduler, configuration.profiles.contains(where: { $0.name == name }) { continue }
            let loaded = registry.entries.filter { $0.kind == kind }.map(\.name)
            if let entry = registry.entry(named: name), entry.kind != kind {
                problems.append(ValidationProblem(path: "defaults.\(kind)", message: "\"\(name)\" is a \(entry.kind) plugin, not a \(kind) plugin"))
            } else if !loaded.contains(name) {
                problems.append(ValidationProblem(path: "defaults.\(kind)", message: "\"\(name)\" is not loaded; loaded \(kind) plugins: \(loaded.isEmpty ? "none" : loaded.joined(separator: ", "))"))
            } else {
                registry.setDefault(name, for: kind)
            }
        }
        var host = PluginHost(registry: registry, reports: reports, problems: problems, profiles: configuration.profiles, defaultScheduler: configuration.defaults[.scheduler], stateDirectory: configuration.stateDirectory)
        host.storageClasses = configuration.storageClasses
        return host
    }

    /// The scheduling profile a workload names: a configured profile, or a scheduler plugin on
    /// its own; nil names the default. Nil when nothing of that name is loaded.
    public func schedulingProfile(named name: String? = nil, percentageOfNodesToScore: Int? = nil) -> SchedulingProfile? {
        let wanted = name ?? defaultScheduler ?? registry.defaults[.scheduler]
        if let wanted, let profile = profiles.first(where: { $0.name == wanted }) {
            var entries: [SchedulingProfile.Entry] = []
            for member in profile.plugins {
                guard let plugin = registry.scheduler(named: member.name) else { return nil }
                entries.append(SchedulingProfile.Entry(name: member.name, plugin: plugin, weight: member.weight))
            }
            return SchedulingProfile(name: profile.name, entries: entries, percentageOfNodesToScore: percentageOfNodesToScore ?? profile.percentageOfNodesToScore)
        }
        guard let plugin = registry.scheduler(named: wanted), let pluginName = wanted ?? registry.entries.first(where: { $0.kind == .scheduler })?.name else { return nil }
        return SchedulingProfile(name: pluginName, entries: [SchedulingProfile.Entry(name: pluginName, plugin: plugin)], percentageOfNodesToScore: percentageOfNodesToScore)
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
