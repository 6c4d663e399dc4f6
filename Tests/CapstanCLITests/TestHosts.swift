import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// "Machines" for tests: network namespaces joined by veths to a bridge in a namespace of
/// their own (the test LAN, 10.213.0.0/24), each host at 10.213.0.<n>. Processes run in a host
/// with `nsenter --net`, so they share the test's file system (binaries, data folders) but see
/// only that host's network. Nothing routes off the LAN: the hosts have no default route, and
/// every address lives in namespaces this harness makes. ``tearDown()`` stops what was started
/// and deletes the namespaces (their veths, bridges, routes and nftables tables go with them).
final class TestHosts: @unchecked Sendable {
    let id: String
    let count: Int
    private(set) var processes: [Process] = []

    /// True when this process may make namespaces and the tools exist (CI runs as root).
    static var available: Bool {
        getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/nsenter")
            && ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].contains { FileManager.default.isExecutableFile(atPath: $0) }
    }

    var lan: String { "capt-\(id)-lan" }
    func name(_ host: Int) -> String { "capt-\(id)-h\(host)" }
    func address(_ host: Int) -> String { "10.213.0.\(host)" }
    func namespace(_ host: Int) -> String { "/run/netns/\(name(host))" }

    init(count: Int) throws {
        id = String(UUID().uuidString.prefix(4)).lowercased()
        self.count = count
        var script = """
        set -e
        ip netns add \(lan)
        ip -n \(lan) link set lo up
        ip -n \(lan) link add br0 type bridge
        ip -n \(lan) link set br0 up

        """
        for host in 1...count {
            script += """
            ip netns add \(name(host))
            ip -n \(name(host)) link set lo up
            ip -n \(lan) link add v\(id)\(host) type veth peer name eth0 netns \(name(host))
            ip -n \(lan) link set v\(id)\(host) master br0 up
            ip -n \(name(host)) addr add \(address(host))/24 dev eth0
            ip -n \(name(host)) link set eth0 up

            """
        }
        try Self.shell(script)
    }

    /// Starts `executable arguments` in a host's network; its output goes to `log`.
    @discardableResult
    func start(in host: Int, _ executable: String, _ arguments: [String], directory: URL, environment: [String: String] = [:], log: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        process.arguments = ["--net=\(namespace(host))", "--", executable] + arguments
        process.currentDirectoryURL = directory
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let path = directory.appendingPathComponent(log).path
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        processes.append(process)
        return process
    }

    /// Runs a shell line in a host's network to its end (on a thread of its own); its output.
    func run(in host: Int, _ line: String, environment: [String: String] = [:]) async throws -> (status: Int32, output: String) {
        let arguments = ["--net=\(namespace(host))", "--", "/bin/sh", "-c", line]
        return try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try Self.capture("/usr/bin/nsenter", arguments, environment: environment) })
            }
            thread.start()
        }
    }

    /// Stops every process (SIGTERM, then SIGKILL after 10 s), removes instance namespaces
    /// named after `nodes`, and deletes the hosts and the LAN.
    func tearDown(nodes: [String] = []) {
        for process in processes.reversed() where process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        var script = ""
        for node in nodes {
            script += "for f in /run/netns/capstan-\(node)_*; do [ -e \"$f\" ] || continue; umount -l \"$f\" 2>/dev/null; rm -f \"$f\"; done\n"
        }
        for host in 1...count { script += "ip netns del \(name(host)) 2>/dev/null\n" }
        script += "ip netns del \(lan) 2>/dev/null\ntrue\n"
        _ = try? Self.shell(script)
    }

    @discardableResult
    static func shell(_ script: String) throws -> String {
        let (status, output) = try capture("/bin/sh", ["-c", script])
        guard status == 0 else { throw DevClusterError("shell failed (\(status)): \(output)\n\(script)") }
        return output
    }

    /// Runs a program to its end; its status and its stdout and stderr together.
    static func capture(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
