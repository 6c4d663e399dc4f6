import CapstanCore
import CapstanStore
import Synchronization

/// Store changes for a controller, in batches: whatever arrived since the controller last looked,
/// so a burst of writes costs one reconcile pass, not one per write. Also wakes the controller on
/// a period (retries, resyncs) when nothing happens.
///
/// Use: `for await batch in feed.batches(every:) { … }`; the sequence ends when the bus finishes.
final class ChangeFeed: Sendable {
    private let subscription: BusSubscription<ResourceEvent>
    private let queue = Mutex<[BusDelivery<ResourceEvent>]>([])

    init(subscription: BusSubscription<ResourceEvent>) {
        self.subscription = subscription
    }

    /// Batches of deliveries (possibly empty, on a timer tick), in revision order.
    func batches(every period: Duration) -> AsyncStream<[BusDelivery<ResourceEvent>]> {
        let (wakes, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let reader = Task { [self] in
            for await delivery in subscription {
                queue.withLock { $0.append(delivery) }
                wake.yield()
            }
            wake.finish()
        }
        let ticker = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: period)
                wake.yield()
            }
        }
        return AsyncStream { [self] continuation in
            let consumer = Task { [self] in
                for await _ in wakes {
                    continuation.yield(takeAll())
                }
                ticker.cancel()
                continuation.finish()
            }
            continuation.onTermination = { [subscription] _ in
                reader.cancel()
                ticker.cancel()
                consumer.cancel()
                subscription.cancel()
            }
        }
    }

    private func takeAll() -> [BusDelivery<ResourceEvent>] {
        queue.withLock { batch in
            defer { batch.removeAll(keepingCapacity: true) }
            return batch
        }
    }
}

extension ResourceStore {
    /// Every stored object of `kinds` as an `added` event: what a controller's cache starts from,
    /// and rebuilds from after a `resync`. Kinds that cannot be read are skipped (the next
    /// resync or period tries again).
    func snapshot(of kinds: [String]) -> [ResourceEvent] {
        kinds.flatMap { kind in ((try? list(kind: kind).items) ?? []).map { ResourceEvent(.added, $0) } }
    }
}
