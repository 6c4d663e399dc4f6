import CapstanCore
import CapstanStore
import ServiceLifecycle
import Synchronization

/// The control plane's one view of the store, shared by the scheduler loop and the controllers —
/// the shape of client-go's SharedInformerFactory: **one** subscription to the store's changes,
/// **one** list (at start and after a `resync`), **one** cache with the indexes the loops ask
/// (instances by node and by owner, claims by volume), instead of a subscription, a list and a
/// private cache per loop.
///
/// Each loop takes a ``Feed``: the changes, in revision order and in batches (whatever arrived
/// since it last looked), plus a tick on its own period. A feed's first batch always holds
/// `.resync`: build from ``read(_:)`` then. The cache may be a little ahead of the changes a loop
/// has handled, never behind.
final class SharedInformer: ServiceLifecycle.Service, Sendable {
    /// The kinds it holds.
    static let kinds = ["Node", "Lease", "Workload", "Instance", "Volume", "VolumeClaim", "Event", "Service", "Endpoints", "StorageClass", "VolumeSnapshot"]

    enum Delivery: Sendable {
        case event(ResourceEvent)
        /// The informer relisted (at start, or after falling behind): rebuild from the cache.
        case resync
    }

    let writer: StoreWriter
    private let cache = Mutex(Cache())
    private let feeds = Mutex<(all: [Feed], listed: Bool)>(([], false))

    /// Told when the first list is in the cache.
    private let onListed: @Sendable () -> Void

    init(writer: StoreWriter, onListed: @escaping @Sendable () -> Void = {}) {
        self.writer = writer
        self.onListed = onListed
    }

    /// A new consumer. Before the first list its first batch waits for it; after, it starts
    /// with a `.resync`. With `kinds`, only changes to objects of those kinds are delivered
    /// (resyncs always are): a loop is not woken for what it passes over — under write load,
    /// Events alone woke every loop once per store transaction.
    func feed(kinds: Set<String>? = nil) -> Feed {
        let feed = Feed(kinds: kinds)
        let listed = feeds.withLock { state in
            state.all.append(feed)
            return state.listed
        }
        if listed { feed.deliver(.resync) }
        return feed
    }

    /// Stops delivering to `feed` (its consumer ended: a leader's loops when it steps down).
    func remove(_ feed: Feed) {
        feeds.withLock { state in state.all.removeAll { $0 === feed } }
        feed.finish()
    }

    /// Reads the cache under its lock: keep `body` short (copy out what is needed).
    func read<T>(_ body: (borrowing Cache) throws -> T) rethrows -> T {
        try cache.withLock { try body($0) }
    }

    func run() async throws {
        // Listed at one revision, then every change after it. (With etcd this server's bus may
        // not have reached the list's revision yet: what it repeats is passed over.)
        var listed = try await relist()
        let subscription = try writer.bus.subscribe(to: .resources, after: listed)
        let all = feeds.withLock { state in
            state.listed = true
            return state.all
        }
        for feed in all { feed.deliver(.resync) }
        onListed()
        // Ends when the bus finishes (graceful shutdown).
        for await delivery in subscription {
            let item: Delivery
            switch delivery {
            case .event(let revision, let event):
                if revision <= listed { continue }
                cache.withLock { $0.apply(event) }
                item = .event(event)
            case .resync:
                listed = try await relist()
                item = .resync
            }
            for feed in feeds.withLock({ $0.all }) where feed.wants(item) { feed.deliver(item) }
        }
        for feed in feeds.withLock({ $0.all }) { feed.finish() }
        try? await gracefulShutdown()
    }

    /// Replaces the cache with a fresh list; returns the list's revision. A store that cannot
    /// be read is asked again (bounded back-off), so the loops never start from nothing.
    private func relist() async throws -> UInt64 {
        var delay = Duration.milliseconds(100)
        while true {
            do {
                let (events, revision) = try await writer.snapshot(of: Self.kinds)
                var fresh = Cache()
                for event in events { fresh.apply(event) }
                cache.withLock { $0 = fresh }
                return revision
            } catch {
                try Task.checkCancellation()
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(2))
            }
        }
    }

    // MARK: The cache

    /// Every object of ``SharedInformer/kinds`` by kind and name, with indexes.
    struct Cache {
        private(set) var objects: [String: [String: AnyResource]] = [:]
        /// Node → the names of the instances bound to it.
        private(set) var instancesByNode: [String: Set<String>] = [:]
        /// `Kind/name` of an owner → the names of the instances it owns.
        /// Instances by owner, each with what the workload plan reads of it (kept here, so a
        /// plan over 10,000 members does not copy 10,000 instances out of the cache).
        private(set) var instancesByOwner: [String: [String: OwnedMember]] = [:]
        /// Volume → the claim it is bound to.
        private(set) var claimsByVolume: [String: String] = [:]
        /// Address key (`node/<podCIDR>`, `svc/<clusterIP>`, ``AddressAllocator/keys(of:)``) →
        /// the object holding it: the allocator's O(1) "is it taken".
        private(set) var addressOwners: [String: String] = [:]

        mutating func apply(_ event: ResourceEvent) {
            let object = event.object
            if let previous = objects[object.kind]?[object.name] { unindex(previous) }
            if event.change == .deleted {
                objects[object.kind]?[object.name] = nil
            } else {
                objects[object.kind, default: [:]][object.name] = object
                index(object)
            }
        }

        private mutating func index(_ object: AnyResource) {
            for key in AddressAllocator.keys(of: object) { addressOwners[key] = object.name }
            switch object {
            case .instance(let instance):
                if let node = instance.spec.nodeName { instancesByNode[node, default: []].insert(instance.metadata.name) }
                if let owner = instance.metadata.owner { instancesByOwner[owner, default: [:]][instance.metadata.name] = OwnedMember(instance) }
            case .volumeClaim(let claim):
                if let volume = claim.spec.volumeName { claimsByVolume[volume] = claim.metadata.name }
            default:
                break
            }
        }

        private mutating func unindex(_ object: AnyResource) {
            for key in AddressAllocator.keys(of: object) where addressOwners[key] == object.name { addressOwners[key] = nil }
            switch object {
            case .instance(let instance):
                if let node = instance.spec.nodeName {
                    instancesByNode[node]?.remove(instance.metadata.name)
                    if instancesByNode[node]?.isEmpty == true { instancesByNode[node] = nil }
                }
                if let owner = instance.metadata.owner {
                    instancesByOwner[owner]?[instance.metadata.name] = nil
                    if instancesByOwner[owner]?.isEmpty == true { instancesByOwner[owner] = nil }
                }
            case .volumeClaim(let claim):
                if let volume = claim.spec.volumeName, claimsByVolume[volume] == claim.metadata.name { claimsByVolume[volume] = nil }
            default:
                break
            }
        }

        /// Every object of `kind`, unordered.
        func all(_ kind: String) -> Dictionary<String, AnyResource>.Values { (objects[kind] ?? [:]).values }

        /// Every object of `kinds` as an `added` event, for a loop that rebuilds its own state.
        func events(of kinds: [String]) -> [ResourceEvent] {
            kinds.flatMap { kind in all(kind).map { ResourceEvent(.added, $0) } }
        }

        func workload(_ name: String) -> Workload? {
            if case .workload(let workload)? = objects["Workload"]?[name] { return workload }
            return nil
        }

        func instance(_ name: String) -> Instance? {
            if case .instance(let instance)? = objects["Instance"]?[name] { return instance }
            return nil
        }

        /// The instances `owner` (`Workload/web`) owns.
        func instances(ownedBy owner: String) -> [Instance] {
            (instancesByOwner[owner] ?? [:]).keys.compactMap { instance($0) }
        }

        /// The instances bound to `node`.
        func instances(onNode node: String) -> [Instance] {
            (instancesByNode[node] ?? []).compactMap { instance($0) }
        }

        /// Names of the workloads, and of the owners of instances whose workload is gone.
        func workloadNames() -> Set<String> {
            var names = Set((objects["Workload"] ?? [:]).keys)
            for owner in instancesByOwner.keys where owner.hasPrefix("Workload/") { names.insert(String(owner.dropFirst("Workload/".count))) }
            return names
        }
    }

    // MARK: Feeds

    /// One consumer's changes, in batches.
    final class Feed: Sendable {
        private let queue = Mutex<(items: [Delivery], finished: Bool)>(([], false))
        private let wakes: AsyncStream<Void>
        private let wake: AsyncStream<Void>.Continuation
        /// The kinds whose changes it takes; nil: all.
        let kinds: Set<String>?

        init(kinds: Set<String>? = nil) {
            self.kinds = kinds
            (wakes, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        }

        func wants(_ item: Delivery) -> Bool {
            guard let kinds, case .event(let event) = item else { return true }
            return kinds.contains(event.object.kind)
        }

        func deliver(_ item: Delivery) {
            queue.withLock { $0.items.append(item) }
            wake.yield()
        }

        func finish() {
            queue.withLock { $0.finished = true }
            wake.finish()
        }

        /// Batches (possibly empty, on a tick every `period`), in order; ends when the
        /// informer stops. A batch is taken when the consumer asks for it: whatever arrived
        /// while it worked on the previous one comes as one batch, not as many small ones.
        func batches(every period: Duration) -> Batches { Batches(feed: self, period: period) }

        /// Takes everything queued; nil once finished and drained.
        fileprivate func take() -> [Delivery]? {
            queue.withLock { state in
                if state.items.isEmpty && state.finished { return nil }
                defer { state.items.removeAll(keepingCapacity: true) }
                return state.items
            }
        }

        fileprivate var wakeSignals: AsyncStream<Void> { wakes }
        fileprivate var wakeContinuation: AsyncStream<Void>.Continuation { wake }
    }

    /// See ``Feed/batches(every:)``. One consumer per feed.
    struct Batches: AsyncSequence, Sendable {
        let feed: Feed
        let period: Duration

        func makeAsyncIterator() -> Iterator {
            let wake = feed.wakeContinuation
            let period = self.period
            // The tick: wakes the consumer even when nothing arrives (retries, resyncs).
            let ticker = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: period)
                    wake.yield()
                }
            }
            return Iterator(feed: feed, wakes: feed.wakeSignals.makeAsyncIterator(), ticker: TickerHandle(ticker))
        }

        struct Iterator: AsyncIteratorProtocol {
            let feed: Feed
            var wakes: AsyncStream<Void>.AsyncIterator
            let ticker: TickerHandle

            mutating func next() async -> [Delivery]? {
                // Wake signals coalesce (the newest one is kept): one wait, then all that is queued.
                guard await wakes.next() != nil else {
                    ticker.cancel()
                    // Cancelled (a leader stepping down stops its loops): the iteration ends.
                    if Task.isCancelled { return nil }
                    return feed.take()
                }
                guard let batch = feed.take() else {
                    ticker.cancel()
                    return nil
                }
                return batch
            }
        }
    }

    /// Cancels the tick when the iteration is dropped.
    final class TickerHandle: Sendable {
        let task: Task<Void, Never>
        init(_ task: Task<Void, Never>) { self.task = task }
        func cancel() { task.cancel() }
        deinit { task.cancel() }
    }
}
