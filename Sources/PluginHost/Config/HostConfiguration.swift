import CapstanSDK
import Foundation
import Yams

/// The operator's `capstan.yaml`: where plugins are, which to load, and the default per kind.
///
/// ```yaml
/// apiVersion: capstan.dev/v1
/// kind: Config
/// pluginPaths: [.build/debug, /usr/lib/capstan/plugins]
/// stateDirectory: .capstan
/// plugins:
///   - name: CapstanBinpack          # libCapstanBinpack.so on pluginPaths
///     config: {resources: {cpu: 1, memory: 1}}
///   - path: /opt/vendor/libacme-storage.so
///     sha256: 3f1c…                 # refuse the file if it changed
/// defaults:
///   scheduler: binpack
/// ```
/// Every key is checked: unknown keys and wrong types are errors that name the key.
public struct HostConfiguration: Sendable, Hashable {
    /// One plugin file to load.
    public struct PluginEntry: Sendable, Hashable {
        /// A file name looked up on ``HostConfiguration/pluginPaths`` (`CapstanBinpack`,
        /// `libCapstanBinpack.so`), or nil when ``path`` is given.
        public var name: String?
        /// An explicit path (relative to the config file), or nil when ``name`` is given.
        public var path: String?
        public var sha256: String?
        /// Given to every plugin the file registers.
        public var config: JSONValue?

        public init(name: String? = nil, path: String? = nil, sha256: String? = nil, config: JSONValue? = nil) {
            self.name = name
            self.path = path
            self.sha256 = sha256
            self.config = config
        }
    }

    /// A scheduling profile: scheduler plugins composed with weights.
    public struct Profile: Sendable, Hashable {
        public struct Member: Sendable, Hashable {
            public var name: String
            public var weight: Int64
            public init(name: String, weight: Int64 = 1) {
                self.name = name
                self.weight = weight
            }
        }
        public var name: String
        public var plugins: [Member]
        /// 1...100, or nil for kube-scheduler's adaptive share.
        public var percentageOfNodesToScore: Int?

        public init(name: String, plugins: [Member], percentageOfNodesToScore: Int? = nil) {
            self.name = name
            self.plugins = plugins
            self.percentageOfNodesToScore = percentageOfNodesToScore
        }
    }

    /// Folders searched for plugins named by ``PluginEntry/name``, in order; absolute.
    public var pluginPaths: [String]
    public var plugins: [PluginEntry]
    public var profiles: [Profile] = []
    public var defaults: [PluginKind: String]
    /// StorageClasses by name (`storageClasses:`): the server creates them at start, keeps them
    /// as written here, and removes those the config no longer names.
    public var storageClasses: [String: StorageClassSpec] = [:]
    /// Where Capstan and its plugins keep state; absolute.
    public var stateDirectory: String
    /// The file it was read from, for messages.
    public var source: String

    public init(pluginPaths: [String], plugins: [PluginEntry], defaults: [PluginKind: String] = [:], stateDirectory: String, source: String = "built-in configuration") {
        self.pluginPaths = pluginPaths
        self.plugins = plugins
        self.defaults = defaults
        self.stateDirectory = stateDirectory
        self.source = source
    }

    /// Reads and checks a config file.
    /// - Throws: ``ValidationError`` naming the file and every problem with its key path.
    public static func load(path: String) throws(ValidationError) -> HostConfiguration {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ValidationError(subject: path, problems: [ValidationProblem(path: "", message: "cannot be read (does it exist?)")])
        }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return try parse(text, source: path, baseDirectory: base)
    }

    /// One plugin's own settings from a YAML or JSON file (what goes under `config:` in
    /// capstan.yaml), for `capstan plugins test`.
    public static func pluginSettings(file path: String) throws(ValidationError) -> JSONValue {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ValidationError(subject: path, problems: [ValidationProblem(path: "", message: "cannot be read (does it exist?)")])
        }
        guard text.utf8.count <= 1 << 20 else {
            throw ValidationError(subject: path, problems: [ValidationProblem(path: "", message: "is larger than 1 MiB")])
        }
        do {
            return try YAMLDecoder().decode(JSONValue.self, from: text)
        } catch {
            throw ValidationError(subject: path, problems: [ValidationProblem(path: "", message: "is not valid YAML or JSON: \(error)")])
        }
    }

    /// Parses config text; relative paths are resolved against `baseDirectory`.
    public static func parse(_ text: String, source: String, baseDirectory: String) throws(ValidationError) -> HostConfiguration {
        let document: ConfigDocument
        do {
            document = try YAMLDecoder().decode(ConfigDocument.self, from: text)
        } catch DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty && context.underlyingError != nil {
            throw ValidationError(subject: source, problems: [ValidationProblem(path: "", message: "is not valid YAML: \(context.underlyingError!)")])
        } catch let error as DecodingError {
            throw ValidationError(subject: source, problems: [error.problem])
        } catch {
            throw ValidationError(subject: source, problems: [ValidationProblem(path: "", message: "is not valid YAML: \(error)")])
        }
        var problems: [ValidationProblem] = []
        if let apiVersion = document.apiVersion, apiVersion != capstanAPIVersion {
            problems.append(ValidationProblem(path: "apiVersion", message: "\"\(apiVersion)\" is not supported; use \(capstanAPIVersion)"))
        }
        if let kind = document.kind, kind != "Config" {
            problems.append(ValidationProblem(path: "kind", message: "\"\(kind)\" is not a config kind; use Config"))
        }
        let plugins = document.plugins ?? []
        for (index, plugin) in plugins.enumerated() {
            let path = "plugins[\(index)]"
            switch (plugin.name, plugin.path) {
            case (nil, nil): problems.append(ValidationProblem(path: path, message: "needs `name` (a file on pluginPaths) or `path`"))
            case (.some, .some): problems.append(ValidationProblem(path: path, message: "has both `name` and `path`; give one"))
            default: break
            }
            if let sha = plugin.sha256, sha.count != 64 || !sha.allSatisfy(\.isHexDigit) {
                problems.append(ValidationProblem(path: "\(path).sha256", message: "\"\(sha)\" is not a SHA-256 (64 hex digits; `capstan plugins inspect FILE` prints it)"))
            }
        }
        var defaults: [PluginKind: String] = [:]
        for (key, name) in (document.defaults ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard let kind = PluginKind(name: key) else {
                problems.append(ValidationProblem(path: "defaults.\(key)", message: "is not a plugin kind; expected one of \(PluginKind.allCases.map(\.description).joined(separator: ", "))"))
                continue
            }
            defaults[kind] = name
        }
        var profiles: [HostConfiguration.Profile] = []
        for (index, profile) in (document.profiles ?? []).enumerated() {
            let path = "profiles[\(index)]"
            if let problem = DNSLabel.problem(with: profile.name) { problems.append(ValidationProblem(path: "\(path).name", message: problem)) }
            if profiles.contains(where: { $0.name == profile.name }) { problems.append(ValidationProblem(path: "\(path).name", message: "\"\(profile.name)\" is defined twice")) }
            if profile.plugins.isEmpty { problems.append(ValidationProblem(path: "\(path).plugins", message: "is empty; name at least one scheduler plugin")) }
            for (position, member) in profile.plugins.enumerated() where !(0...100).contains(member.weight ?? 1) {
                problems.append(ValidationProblem(path: "\(path).plugins[\(position)].weight", message: "\(member.weight!) is outside 0...100"))
            }
            if let percentage = profile.percentageOfNodesToScore, !(1...100).contains(percentage) {
                problems.append(ValidationProblem(path: "\(path).percentageOfNodesToScore", message: "\(percentage) is outside 1...100"))
            }
            profiles.append(Profile(name: profile.name, plugins: profile.plugins.map { Profile.Member(name: $0.name, weight: $0.weight ?? 1) }, percentageOfNodesToScore: profile.percentageOfNodesToScore))
        }
        for (name, spec) in (document.storageClasses ?? [:]).sorted(by: { $0.key < $1.key }) {
            if let problem = DNSLabel.problem(with: name) { problems.append(ValidationProblem(path: "storageClasses.\(name)", message: problem)) }
            problems += spec.validate(at: "storageClasses.\(name)")
        }
        guard problems.isEmpty else { throw ValidationError(subject: source, problems: problems) }
        func absolute(_ path: String) -> String {
            path.hasPrefix("/") ? path : URL(fileURLWithPath: baseDirectory).appendingPathComponent(path).standardizedFileURL.path
        }
        var configuration = HostConfiguration(
            pluginPaths: (document.pluginPaths ?? []).map(absolute),
            plugins: plugins.map { PluginEntry(name: $0.name, path: $0.path.map(absolute), sha256: $0.sha256, config: $0.config) },
            defaults: defaults,
            stateDirectory: absolute(document.stateDirectory ?? ".capstan"),
            source: source)
        configuration.profiles = profiles
        configuration.storageClasses = document.storageClasses ?? [:]
        return configuration
    }

    /// Finds the file of a plugin entry.
    /// - Returns: the path, or a message naming what was searched.
    func resolve(_ entry: PluginEntry) -> Result<String, LoadFailure> {
        if let path = entry.path { return .success(path) }
        let name = entry.name ?? ""
        let candidates = name.hasSuffix(".so") ? [name] : [name, "lib\(name).so", "\(name).so"]
        for directory in pluginPaths {
            for candidate in candidates {
                let path = URL(fileURLWithPath: directory).appendingPathComponent(candidate).path
                if FileManager.default.fileExists(atPath: path) { return .success(path) }
            }
        }
        return .failure(LoadFailure(.file, "plugin \"\(name)\" not found: looked for \(candidates.joined(separator: ", ")) in pluginPaths \(pluginPaths.isEmpty ? "(none configured)" : pluginPaths.joined(separator: ", "))"))
    }

    /// The in-tree plugins, from the folder the capstan binary runs from (or `../lib/capstan/plugins`),
    /// with their conventional defaults: what `capstan dev` uses when given no config.
    public static func builtIn(executableDirectory: String, stateDirectory: String) -> HostConfiguration {
        let installed = URL(fileURLWithPath: executableDirectory).appendingPathComponent("../lib/capstan/plugins").standardizedFileURL.path
        return HostConfiguration(
            pluginPaths: [executableDirectory, installed],
            plugins: inTreePlugins.map { PluginEntry(name: $0) },
            defaults: [.scheduler: "binpack", .storage: "hostpath", .network: "host", .loadBalancer: "nftables", .runtime: "process"],
            stateDirectory: stateDirectory)
    }

    /// The plugin libraries that ship with Capstan.
    public static let inTreePlugins = ["CapstanBinpack", "CapstanSpread", "CapstanBestFit", "CapstanFGD", "CapstanHostPath", "CapstanHostNetwork", "CapstanCNI", "CapstanRoundRobin", "CapstanLeastConn", "CapstanNFTables", "CapstanProcessRuntime", "CapstanRuncRuntime", "CapstanLoopback"]
}

/// The file's shape, decoded strictly.
struct ConfigDocument: Decodable {
    var apiVersion: String?
    var kind: String?
    var pluginPaths: [String]?
    var stateDirectory: String?
    var plugins: [PluginDocument]?
    var profiles: [ProfileDocument]?
    var defaults: [String: String]?
    var storageClasses: [String: StorageClassSpec]?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case apiVersion, kind, pluginPaths, stateDirectory, plugins, profiles, defaults, storageClasses
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(CodingKeys.allCases.map(\.rawValue), in: decoder)
        apiVersion = try container.decodeIfPresent(String.self, forKey: .apiVersion)
        kind = try container.decodeIfPresent(String.self, forKey: .kind)
        pluginPaths = try container.decodeIfPresent([String].self, forKey: .pluginPaths)
        stateDirectory = try container.decodeIfPresent(String.self, forKey: .stateDirectory)
        plugins = try container.decodeIfPresent([PluginDocument].self, forKey: .plugins)
        profiles = try container.decodeIfPresent([ProfileDocument].self, forKey: .profiles)
        defaults = try container.decodeIfPresent([String: String].self, forKey: .defaults)
        storageClasses = try container.decodeIfPresent([String: StorageClassSpec].self, forKey: .storageClasses)
    }
}

struct PluginDocument: Decodable {
    var name: String?
    var path: String?
    var sha256: String?
    var config: JSONValue?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, path, sha256, config
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(CodingKeys.allCases.map(\.rawValue), in: decoder)
        name = try container.decodeIfPresent(String.self, forKey: .name)
        path = try container.decodeIfPresent(String.self, forKey: .path)
        sha256 = try container.decodeIfPresent(String.self, forKey: .sha256)
        config = try container.decodeIfPresent(JSONValue.self, forKey: .config)
    }
}

struct ProfileDocument: Decodable {
    struct Member: Decodable {
        var name: String
        var weight: Int64?

        enum CodingKeys: String, CodingKey, CaseIterable { case name, weight }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            try container.rejectUnknownKeys(CodingKeys.allCases.map(\.rawValue), in: decoder)
            name = try container.decode(String.self, forKey: .name)
            weight = try container.decodeIfPresent(Int64.self, forKey: .weight)
        }
    }

    var name: String
    var plugins: [Member]
    var percentageOfNodesToScore: Int?

    enum CodingKeys: String, CodingKey, CaseIterable { case name, plugins, percentageOfNodesToScore }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(CodingKeys.allCases.map(\.rawValue), in: decoder)
        name = try container.decode(String.self, forKey: .name)
        plugins = try container.decode([Member].self, forKey: .plugins)
        percentageOfNodesToScore = try container.decodeIfPresent(Int.self, forKey: .percentageOfNodesToScore)
    }
}
