import CapstanSDK

/// What the host knows about one plugin file: identity, versions, and loaded or why refused.
/// `capstan plugins list / inspect / verify` print these.
public struct LibraryReport: Sendable, Codable, Hashable {
    public var path: String
    /// The file's SHA-256, hex; nil when the file could not be read.
    public var sha256: String?
    /// From the handshake.
    public var libraryName: String?
    public var libraryVersion: String?
    public var sdkVersion: String?
    /// The Swift compiler it was built with, or `C` for plugins without Swift.
    public var compiler: String?
    public var kinds: [String]
    public var plugins: [PluginReport]
    /// The check that refused the whole library, if one did.
    public var failure: LoadFailure?

    public init(path: String) {
        self.path = path
        self.kinds = []
        self.plugins = []
    }

    /// Loaded when neither the library nor any of its plugins was refused.
    public var isLoaded: Bool { failure == nil && plugins.allSatisfy { $0.failure == nil } }
}

/// One plugin a library registered, and whether the host created it.
public struct PluginReport: Sendable, Codable, Hashable {
    public var name: String
    public var kind: String
    public var configurationType: String
    public var failure: LoadFailure?

    public init(name: String, kind: String, configurationType: String, failure: LoadFailure? = nil) {
        self.name = name
        self.kind = kind
        self.configurationType = configurationType
        self.failure = failure
    }
}
