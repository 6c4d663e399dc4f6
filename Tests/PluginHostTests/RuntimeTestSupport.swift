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
