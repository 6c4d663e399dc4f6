import ArgumentParser
import CapstanAPI
import Foundation

/// `--server` and `--token`, shared by every verb that talks to the API.
struct ClientOptions: ParsableArguments {
    @Option(help: "The API server, or several of one cluster comma-separated (tried in turn when one cannot be reached) (default: $CAPSTAN_SERVER, else the current server of ~/.capstan/config, else http://127.0.0.1:7070).")
    var server: String?

    @Option(help: "The bearer token (default: $CAPSTAN_TOKEN, else the server's entry in ~/.capstan/config, else ./.capstan/admin.token).")
    var token: String?

    var client: APIClient {
        let address = Self.resolve(server)
        return APIClient(server: address, token: Self.token(token, for: address), caPEM: Self.certificateAuthority(for: address))
    }

    /// The CA to trust for an `https://` server: its entry in the config file, `$CAPSTAN_CA` (a
    /// PEM file), or the CA of a server whose data directory is ./.capstan.
    static func certificateAuthority(for server: String) -> String? {
        guard server.hasPrefix("https://") else { return nil }
        let config = ClientConfig.load()
        for one in APIClient.split(server) { if let ca = config.servers[one]?.ca { return ca } }
        if let file = ProcessInfo.processInfo.environment["CAPSTAN_CA"], let pem = try? String(contentsOfFile: file, encoding: .utf8) { return pem }
        return try? String(contentsOfFile: ".capstan/pki/ca.crt", encoding: .utf8)
    }

    static func resolve(_ server: String?) -> String {
        let address = server ?? ProcessInfo.processInfo.environment["CAPSTAN_SERVER"] ?? ClientConfig.load().current ?? "http://127.0.0.1:7070"
        return APIClient.split(address).map { $0.contains("://") ? $0 : "http://" + $0 }.joined(separator: ",")
    }

    /// The token for `server`: the flag, `$CAPSTAN_TOKEN`, the config file's entry, or the
    /// admin token of a `capstan dev` started in this folder.
    static func token(_ flag: String?, for server: String) -> String? {
        if let flag { return flag }
        if let token = ProcessInfo.processInfo.environment["CAPSTAN_TOKEN"], !token.isEmpty { return token }
        let config = ClientConfig.load()
        for one in APIClient.split(server) { if let entry = config.servers[one] { return entry.token } }
        return TokenFile.read(".capstan/admin.token")
    }
}

/// Exit codes a script can rely on (docs/cli.md): 0 done; 1 the server refused (invalid,
/// conflict, not found…); 2 bad usage; 3 the server cannot be reached; 4 timed out waiting.
enum CLIExit {
    static let refused: Int32 = 1
    static let usage: Int32 = 2
    static let unreachable: Int32 = 3
    static let timedOut: Int32 = 4

    /// Prints an API error to stderr and exits with its code.
    static func fail(_ error: APIError) -> ExitCode {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        return ExitCode(error.status == 0 ? unreachable : refused)
    }

    static func fail(_ message: String, code: Int32) -> ExitCode {
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        return ExitCode(code)
    }
}

/// Resolves a kind name the way kubectl does (`instances`, `instance`, `inst`, `i`).
func resourceKind(_ name: String) throws -> ResourceKind {
    guard let kind = ResourceKind.named(name) else {
        throw ValidationError("\"\(name)\" is not a kind; use one of \(ResourceKind.names)")
    }
    return kind
}
