import Synchronization

/// `/readyz` answers ready once every controller has listed the store and built its cache: a
/// load balancer or a test that waits for it never reaches a server whose loops are not running.
final class ReadinessGate: Sendable {
    private let waiting: Mutex<Set<String>>

    /// - Parameter controllers: the names of the loops that must report before the server is ready.
    init(_ controllers: Set<String>) { waiting = Mutex(controllers) }

    /// The named loop has listed and runs.
    func ready(_ controller: String) { waiting.withLock { _ = $0.remove(controller) } }

    var isReady: Bool { waiting.withLock { $0.isEmpty } }

    /// What is still starting, for the 503's message.
    var pending: [String] { waiting.withLock { $0.sorted() } }
}
