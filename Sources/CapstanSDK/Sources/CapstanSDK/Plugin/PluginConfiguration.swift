import CapstanCore
internal import Foundation

/// A plugin's own settings, decoded by the host from `plugins[].config` in `capstan.yaml` and
/// validated *before* the plugin is created. A config with problems refuses the plugin.
public protocol PluginConfiguration: Decodable, Sendable {
    /// The value used when `config` is absent.
    static var defaultValue: Self { get throws }
    /// Every problem with the values; paths are relative to the config (`weights.cpu`).
    func validate() -> [ValidationProblem]
}

extension PluginConfiguration {
    public func validate() -> [ValidationProblem] { [] }
}

extension PluginConfiguration {
    /// Decodes from an empty map, so types whose fields all have defaults need not write one.
    public static var defaultValue: Self {
        get throws { try JSONDecoder().decode(Self.self, from: Data("{}".utf8)) }
    }
}

/// For plugins that take no settings: any `config` given is refused.
public struct NoConfiguration: PluginConfiguration, Hashable {
    public init() {}
    public static var defaultValue: NoConfiguration { NoConfiguration() }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: AnyCodingKey.self)
        if let key = container.allKeys.first {
            throw DecodingError.dataCorrupted(DecodingError.Context(codingPath: [key], debugDescription: "unknown key; this plugin takes no configuration"))
        }
    }
}

/// What the host gives a plugin when it creates it.
public struct PluginContext: Sendable {
    /// The plugin's registered name.
    public var pluginName: String
    /// A directory the plugin may keep state in across restarts; created by the host.
    public var stateDirectory: String
    /// The node this process serves, for node-side plugins; nil on a control-plane-only process.
    public var nodeName: String?
    /// Writes a line to the host's log, attributed to the plugin.
    public var log: @Sendable (PluginLogLevel, String) -> Void

    public init(pluginName: String, stateDirectory: String, nodeName: String? = nil, log: @escaping @Sendable (PluginLogLevel, String) -> Void = { _, _ in }) {
        self.pluginName = pluginName
        self.stateDirectory = stateDirectory
        self.nodeName = nodeName
        self.log = log
    }
}

public enum PluginLogLevel: Int32, Sendable, Hashable, Comparable {
    case debug = 0, info = 1, warning = 2, error = 3
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The configuration as the host hands it over: JSON bytes, and where it came from.
public struct PluginConfigurationInput: Sendable {
    /// The `config` value as JSON; nil when absent.
    public var json: [UInt8]?
    /// Where it sits in the operator's file, to prefix problem paths (`plugins[1].config`).
    public var path: String

    public init(json: [UInt8]?, path: String) {
        self.json = json
        self.path = path
    }

    /// Decodes and validates a configuration.
    /// - Throws: ``PluginError`` with code ``PluginError/Code/invalidConfiguration`` and every
    ///   problem, its path prefixed with ``path``.
    public func decode<Configuration: PluginConfiguration>(_ type: Configuration.Type) throws -> Configuration {
        let configuration: Configuration
        do {
            if let json {
                configuration = try JSONDecoder().decode(Configuration.self, from: Data(json))
            } else {
                configuration = try Configuration.defaultValue
            }
        } catch let error as DecodingError {
            throw PluginError(.invalidConfiguration, "invalid plugin configuration", problems: [prefixed(error.problem)])
        }
        let problems = configuration.validate()
        guard problems.isEmpty else {
            throw PluginError(.invalidConfiguration, "invalid plugin configuration", problems: problems.map(prefixed))
        }
        return configuration
    }

    private func prefixed(_ problem: ValidationProblem) -> ValidationProblem {
        ValidationProblem(path: problem.path.isEmpty ? path : "\(path).\(problem.path)", message: problem.message)
    }
}
