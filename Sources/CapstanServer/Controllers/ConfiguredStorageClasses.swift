import CapstanCore
import CapstanStore
import ServiceLifecycle

/// With several servers (etcd), the StorageClasses of `capstan.yaml` are written by the leader,
/// once at the start of each term, with the term's fenced writer: two servers whose configs
/// differ then never undo each other's classes while one leads — the leader's config is the
/// cluster's (keep `capstan.yaml` the same on every server, as kube-apiserver's flags). With
/// SQLite the one server writes them at start (``ControlPlane/keepConfiguredStorageClasses(_:in:)``).
struct ConfiguredStorageClasses: ServiceLifecycle.Service {
    let classes: [String: StorageClassSpec]
    let writer: StoreWriter
    let log: @Sendable (String) -> Void

    func run() async throws {
        // Retried while the term lasts (a store briefly unavailable); a fenced write means the
        // term is over and the loops are being stopped.
        var delay: Duration = .milliseconds(200)
        while !Task.isCancelled {
            do {
                try await ControlPlane.keepConfiguredStorageClasses(classes, in: writer)
                break
            } catch {
                log("cannot write the StorageClasses of the configuration (retrying in \(delay)): \(error)")
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(10))
            }
        }
        // A loop of the term that returns would end the term: wait for its end (cancellation,
        // which ends the iteration of a stream nobody yields to).
        let (end, keep) = AsyncStream<Never>.makeStream()
        defer { keep.finish() }
        for await _ in end {}
    }
}
