import CapstanSDK
import Foundation

// Helpers shared by the runtime plugins' tests.

/// Polls until the instance reaches `state`, at most `seconds`; returns its last status either way.
func waitFor(_ runtime: any RuntimePlugin, _ id: String, _ state: RuntimeInstanceStatus.State, seconds: Double = 10) async throws -> RuntimeInstanceStatus {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        let status = try await runtime.status(id)
        if status.state == state { return status }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await runtime.status(id)
}

/// An instance's output so far, as text.
func text(_ runtime: any RuntimePlugin, _ id: String, _ stream: LogsRequest.Stream = .stdout) async throws -> String {
    String(decoding: try await runtime.logs(LogsRequest(id: id, stream: stream)).data, as: UTF8.self)
}

/// A network namespace made with `ip netns add` for a test (only loopback in it), removed after.
struct NetworkNamespace {
    let name = "capt-rt-\(UUID().uuidString.prefix(6).lowercased())"
    var path: String { "/run/netns/\(name)" }

    static var available: Bool {
        geteuid() == 0 && ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].contains { FileManager.default.isExecutableFile(atPath: $0) }
    }

    private init() {}

    static func make() async throws -> NetworkNamespace {
        let namespace = NetworkNamespace()
        try await Fixtures.run("/bin/sh", ["-c", "ip netns add \(namespace.name)"])
        return namespace
    }

    func remove() { _ = try? Fixtures.runBlocking("/bin/sh", ["-c", "ip netns del \(name)"]) }
}
