import CapstanAPI
import CapstanCore
import CapstanEtcd
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A real etcd (Debian's etcd-server) on loopback ports of its own, in a temporary folder.
public final class EtcdServer: @unchecked Sendable {
    public static let binary = ["/usr/bin/etcd", "/usr/local/bin/etcd"].first { FileManager.default.isExecutableFile(atPath: $0) }
    public static var available: Bool { binary != nil }

    public let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("capstan-etcd-\(UUID().uuidString.prefix(8))")
    public let clientPort: Int
    public let process = Process()
    /// The certificates it serves with and asks clients for, when it serves TLS.
    public let pki: EtcdPKI?
    public var endpoint: String { "\(pki == nil ? "http" : "https")://127.0.0.1:\(clientPort)" }
    /// What a client needs to reach it: its CA and a client certificate.
    public var clientTLS: EtcdTLS? {
        guard let pki else { return nil }
        return try? EtcdTLS.load(caFile: pki.caFile, certificateFile: pki.clientCertificateFile, keyFile: pki.clientKeyFile)
    }

    /// One member alone, or member `name` of a cluster (`initialCluster`: name=peer URL, …).
    /// - Parameter pki: serve clients over TLS with its server certificate and let in only
    ///   clients holding a certificate of its CA (`--client-cert-auth`).
    public init(name: String = "t", clientPort: Int = EtcdServer.freePort(), peerPort: Int = EtcdServer.freePort(), initialCluster: String? = nil, pki: EtcdPKI? = nil) throws {
        self.clientPort = clientPort
        self.pki = pki
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        process.executableURL = URL(fileURLWithPath: Self.binary!)
        let scheme = pki == nil ? "http" : "https"
        process.arguments = ["--name", name, "--data-dir", directory.appendingPathComponent("data").path,
                             "--listen-client-urls", "\(scheme)://127.0.0.1:\(clientPort)", "--advertise-client-urls", "\(scheme)://127.0.0.1:\(clientPort)",
                             "--listen-peer-urls", "http://127.0.0.1:\(peerPort)", "--initial-advertise-peer-urls", "http://127.0.0.1:\(peerPort)",
                             "--initial-cluster", initialCluster ?? "\(name)=http://127.0.0.1:\(peerPort)"]
            + (pki.map { ["--cert-file", $0.serverCertificateFile, "--key-file", $0.serverKeyFile, "--client-cert-auth", "--trusted-ca-file", $0.caFile] } ?? [])
        let log = directory.appendingPathComponent("etcd.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: log)
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
    }

    /// Waits until it answers.
    public func ready() async throws {
        let client = EtcdClient(endpoints: [endpoint], tls: clientTLS)
        for _ in 0..<100 {
            if (try? await client.range(Array("probe".utf8))) != nil { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw EtcdError.unavailable("etcd did not start: \((try? String(contentsOf: directory.appendingPathComponent("etcd.log"), encoding: .utf8)) ?? "")")
    }

    public func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    /// A port the kernel had free a moment ago (bind to 0, read it, close).
    public static func freePort() -> Int {
        let (fd, port) = boundLoopbackSocket()
        close(fd)
        return port
    }

    /// A TCP socket bound to a port the kernel picks on 127.0.0.1, not listening, and that port.
    private static func boundLoopbackSocket() -> (descriptor: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// A loopback port that refuses connections for as long as `body` runs: bound and not
    /// listening, so no other test's server can take it meanwhile (a port found free and let go,
    /// as ``freePort()`` does, can be listening for someone else by the time it is dialled).
    public static func withDeadPort<T>(_ body: (Int) async throws -> T) async rethrows -> T {
        let (fd, port) = boundLoopbackSocket()
        defer { close(fd) }
        return try await body(port)
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with the cluster CA
/// code Capstan uses for its own PKI, in files as etcd and `--etcd-cafile` … take them.
public struct EtcdPKI: Sendable {
    public let directory: URL
    public var caFile: String { directory.appendingPathComponent("ca.crt").path }
    public var serverCertificateFile: String { directory.appendingPathComponent("server/server.crt").path }
    public var serverKeyFile: String { directory.appendingPathComponent("server/server.key").path }
    public var clientCertificateFile: String { directory.appendingPathComponent("client/server.crt").path }
    public var clientKeyFile: String { directory.appendingPathComponent("client/server.key").path }

    public init(directory: URL = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("capstan-etcd-pki-\(UUID().uuidString.prefix(8))")) throws {
        self.directory = directory
        let ca = try ClusterCA.loadOrCreate(in: directory.path)
        for (folder, hosts) in [("server", ["127.0.0.1", "localhost"]), ("client", ["capstan-etcd-client"])] {
            try FileManager.default.createDirectory(at: directory.appendingPathComponent(folder), withIntermediateDirectories: true)
            _ = try ca.serverIdentity(in: directory.appendingPathComponent(folder).path, hosts: hosts)
        }
    }

    public func remove() { try? FileManager.default.removeItem(at: directory) }
}

/// Three members on loopback, one cluster.
public func etcdCluster(of count: Int = 3) async throws -> [EtcdServer] {
    let ports = (0..<count).map { _ in (client: EtcdServer.freePort(), peer: EtcdServer.freePort()) }
    let initial = ports.enumerated().map { "m\($0.offset)=http://127.0.0.1:\($0.element.peer)" }.joined(separator: ",")
    let members = try ports.enumerated().map { try EtcdServer(name: "m\($0.offset)", clientPort: $0.element.client, peerPort: $0.element.peer, initialCluster: initial) }
    for member in members { try await member.ready() }
    return members
}

public func withEtcd(_ body: (EtcdServer, EtcdClient) async throws -> Void) async throws {
    let server = try EtcdServer()
    defer { server.stop() }
    try await server.ready()
    try await body(server, EtcdClient(endpoints: [server.endpoint]))
}

/// A `capstan server --store etcd://…` process (the real binary), in a folder of its own.
public final class ServerProcess: @unchecked Sendable {
    public static let products: URL = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: exe).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("capstan").path), url.path != "/" { url.deleteLastPathComponent() }
        return url
    }()

    public let name: String
    public let directory: URL
    public let process = Process()
    public private(set) var address = ""

    /// - Parameter secretsFrom: a data directory whose `secrets.keys` this server shares.
    public init(name: String, etcd: [String], secretsFrom: URL? = nil, extra: [String] = []) throws {
        self.name = name
        directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("capstan-\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("data"), withIntermediateDirectories: true)
        if let secretsFrom {
            try FileManager.default.copyItem(at: secretsFrom.appendingPathComponent("data/secrets.keys"), to: directory.appendingPathComponent("data/secrets.keys"))
        }
        process.executableURL = Self.products.appendingPathComponent("capstan")
        process.arguments = ["server", "--store", "etcd://" + etcd.map { $0.replacingOccurrences(of: "https://", with: "").replacingOccurrences(of: "http://", with: "") }.joined(separator: ","),
                             "--name", name, "--listen", "127.0.0.1:0", "--insecure", "--data-dir", directory.appendingPathComponent("data").path,
                             "--node-timeout", "86400"] + extra
        process.environment = ProcessInfo.processInfo.environment.merging(["CAPSTAN_CONFIG": directory.appendingPathComponent("client-config").path]) { _, new in new }
        let log = directory.appendingPathComponent("server.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: log)
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
    }

    public var dataDirectory: URL { directory.appendingPathComponent("data") }
    public var adminToken: String? { try? String(contentsOf: dataDirectory.appendingPathComponent("admin.token"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) }
    public var log: String { (try? String(contentsOf: directory.appendingPathComponent("server.log"), encoding: .utf8)) ?? "" }

    /// Waits until it listens and is ready.
    public func ready() async throws {
        let file = dataDirectory.appendingPathComponent("server.address")
        for _ in 0..<300 {
            if let text = try? String(contentsOf: file, encoding: .utf8), !text.isEmpty {
                address = text.trimmingCharacters(in: .whitespacesAndNewlines)
                if (try? await APIClient(server: address).text("/readyz")) != nil { return }
            }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw EtcdError.unavailable("server \(name) did not start:\n\(log)")
    }

    public func kill9() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    public func stop() {
        kill9()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Waits for `process` to exit on a thread of its own, not on one of the (two, here) threads
/// every test's async code shares: a blocking wait there stalls unrelated tests' timings.
public func exitStatus(of process: Process) async -> Int32 {
    await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
        Thread {
            process.waitUntilExit()
            continuation.resume(returning: process.terminationStatus)
        }.start()
    }
}

/// Acknowledged writes, name → value.
public final class Acked: Sendable {
    public init() {}
    public let values = Mutex<[String: String]>([:])
}
