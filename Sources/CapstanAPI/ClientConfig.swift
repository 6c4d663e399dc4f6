import Foundation

/// The CLI's config file, `~/.capstan/config` (or `$CAPSTAN_CONFIG`): the token for each server
/// URL, like a kubeconfig. `capstan server` and `capstan dev` write their first admin token here
/// (0600, its folder 0700) so the CLI works with no extra step.
public struct ClientConfig: Codable, Sendable, Equatable {
    public struct Entry: Codable, Sendable, Equatable {
        public var token: String
        /// For `https://` servers: the cluster CA (PEM) the CLI trusts for it, and only it.
        public var ca: String?
        public init(token: String, ca: String? = nil) {
            self.token = token
            self.ca = ca
        }
    }

    /// The server used when none is named.
    public var current: String?
    /// Server URL → its entry.
    public var servers: [String: Entry] = [:]

    public init() {}

    /// `$CAPSTAN_CONFIG`, else `~/.capstan/config`.
    public static var path: String {
        if let path = ProcessInfo.processInfo.environment["CAPSTAN_CONFIG"], !path.isEmpty { return path }
        // $HOME first, as shells and other tools read it; the password database's home after.
        let home = ProcessInfo.processInfo.environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? FileManager.default.homeDirectoryForCurrentUser.path
        return URL(fileURLWithPath: home).appendingPathComponent(".capstan/config").path
    }

    /// The file's contents; empty when absent or unreadable.
    public static func load(from path: String = ClientConfig.path) -> ClientConfig {
        guard let data = FileManager.default.contents(atPath: path), let config = try? JSONDecoder().decode(ClientConfig.self, from: data) else { return ClientConfig() }
        return config
    }

    /// Records `token` (and the CA to trust) for `server` and makes it current.
    public static func remember(server: String, token: String, ca: String? = nil, at path: String = ClientConfig.path) throws {
        var config = load(from: path)
        config.servers[server] = Entry(token: token, ca: ca)
        config.current = server
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let temporary = path + ".tmp"
        _ = FileManager.default.createFile(atPath: temporary, contents: try encoder.encode(config), attributes: [.posixPermissions: 0o600])
        guard rename(temporary, path) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }
}

/// Token files (`admin.token`, `agent.token`): the token on one line, 0600.
public enum TokenFile {
    public static func read(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return token.isEmpty ? nil : token
    }

    public static func write(_ token: String, to path: String) throws {
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data((token + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
        guard rename(temporary, path) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }
}
