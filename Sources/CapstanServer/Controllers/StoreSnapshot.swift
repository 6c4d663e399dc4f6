import CapstanCore
import CapstanStore

extension ResourceStore {
    /// Every stored object of `kinds` as an `added` event: what a controller's cache starts from,
    /// and rebuilds from after a `resync`. Kinds that cannot be read are skipped (the next
    /// resync or period tries again).
    func snapshot(of kinds: [String]) -> [ResourceEvent] {
        kinds.flatMap { kind in ((try? list(kind: kind).items) ?? []).map { ResourceEvent(.added, $0) } }
    }
}
