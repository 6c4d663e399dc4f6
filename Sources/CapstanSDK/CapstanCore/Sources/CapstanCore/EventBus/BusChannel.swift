import Synchronization

/// One topic's stream: ordered, revisioned, bounded per subscriber, with a replay window.
///
/// Every publish is ordered under one lock, so every subscriber sees the same order. A subscriber
/// whose buffer is full loses its buffered events and gets a ``BusDelivery/resync(revision:)``
/// marker instead: memory stays bounded however slow it is. Subscribers take whole batches at a
/// time, so the per-event cost on the reading side is a few nanoseconds.
///
/// The publish and delivery path is `@inlinable` over a `@frozen` state layout, so a client's
/// `BusChannel<ResourceEvent>` is specialised in the client and does no generic-metadata lookups
/// per event. That layout is therefore part of CapstanCore's ABI (docs/versioning.md).
public final class BusChannel<Payload: Sendable>: Sendable {
    /// Events one subscriber may have waiting before it is resynced.
    public let subscriberCapacity: Int
    /// Events kept for subscribers that resume from a revision.
    public let replayWindow: Int

    @frozen @usableFromInline
    struct Subscriber {
        @usableFromInline let id: Int
        @usableFromInline var buffer: [BusDelivery<Payload>]
        /// A subscriber waiting for events; woken with a signal, it then takes the whole buffer.
        @usableFromInline var waiter: CheckedContinuation<Void, Never>?
        @usableFromInline let capacity: Int

        @inlinable
        init(id: Int, capacity: Int) {
            self.id = id
            self.buffer = []
            self.waiter = nil
            self.capacity = capacity
        }
    }

    @frozen @usableFromInline
    struct State {
        @usableFromInline var lastRevision: UInt64
        /// The newest revision evicted from the window; resuming after an older one is impossible.
        @usableFromInline var evictedThrough: UInt64
        @usableFromInline var window: [(UInt64, Payload)]
        @usableFromInline var windowStart: Int
        /// Few (a handful per topic), so an array searched by id beats a dictionary.
        @usableFromInline var subscribers: [Subscriber]
        @usableFromInline var nextSubscriberID: Int
        @usableFromInline var finished: Bool

        @inlinable
        init(lastRevision: UInt64) {
            self.lastRevision = lastRevision
            self.evictedThrough = lastRevision
            self.window = []
            self.windowStart = 0
            self.subscribers = []
            self.nextSubscriberID = 0
            self.finished = false
        }

        @inlinable
        func index(of id: Int) -> Int? {
            subscribers.firstIndex { $0.id == id }
        }
    }

    @usableFromInline let state: Mutex<State>

    public init(subscriberCapacity: Int = 4096, replayWindow: Int = 4096, startingRevision: UInt64 = 0) {
        precondition(subscriberCapacity > 0 && replayWindow >= 0)
        self.subscriberCapacity = subscriberCapacity
        self.replayWindow = replayWindow
        self.state = Mutex(State(lastRevision: startingRevision))
    }

    /// The revision of the newest event published.
    public var lastRevision: UInt64 { state.withLock { $0.lastRevision } }

    /// Publishes one event to every subscriber.
    ///
    /// - Parameter revision: the event's revision, when the caller (the store) assigns them; it
    ///   must be greater than every earlier one. Nil takes the next revision.
    /// - Returns: the event's revision.
    @inlinable @discardableResult
    public func publish(_ payload: Payload, revision: UInt64? = nil) -> UInt64 {
        let window = replayWindow
        var wake: [CheckedContinuation<Void, Never>] = []
        let assigned = state.withLock { state in
            let assigned = revision ?? state.lastRevision + 1
            precondition(assigned > state.lastRevision, "bus revisions must grow")
            state.record(payload, revision: assigned, window: window, wake: &wake)
            return assigned
        }
        // Woken outside the lock: a wakeup may enter the kernel, and the lock must stay short.
        for waiter in wake { waiter.resume() }
        return assigned
    }

    /// Publishes several events under one lock, in order, with consecutive revisions: what a store
    /// transaction that writes several objects does.
    /// - Returns: the revision of the last one (``lastRevision`` when `payloads` is empty).
    @inlinable @discardableResult
    public func publish<S: Sequence<Payload>>(contentsOf payloads: S) -> UInt64 {
        let window = replayWindow
        var wake: [CheckedContinuation<Void, Never>] = []
        let last = state.withLock { state in
            for payload in payloads {
                state.record(payload, revision: state.lastRevision + 1, window: window, wake: &wake)
            }
            return state.lastRevision
        }
        for waiter in wake { waiter.resume() }
        return last
    }

    /// Starts a subscription.
    ///
    /// - Parameters:
    ///   - revision: resume after this revision, replaying what the window still holds; nil
    ///     starts with the next event published.
    ///   - capacity: this subscriber's buffer bound; the channel's default when nil.
    /// - Throws: ``BusError/revisionTooOld(requested:oldest:)`` when the window no longer reaches
    ///   back that far, ``BusError/finished`` after ``finish()``.
    public func subscribe(after revision: UInt64? = nil, capacity: Int? = nil) throws(BusError) -> BusSubscription<Payload> {
        let result: Result<Int, BusError> = state.withLock { state in
            if state.finished { return .failure(.finished) }
            let id = state.nextSubscriberID
            var subscriber = Subscriber(id: id, capacity: capacity ?? subscriberCapacity)
            if let revision, revision < state.lastRevision {
                guard revision >= state.evictedThrough else {
                    return .failure(.revisionTooOld(requested: revision, oldest: state.evictedThrough))
                }
                let count = state.window.count
                for offset in 0..<count {
                    let (eventRevision, payload) = state.window[(state.windowStart + offset) % count]
                    if eventRevision > revision {
                        subscriber.deliver(.event(revision: eventRevision, payload: payload), revision: eventRevision)
                    }
                }
            }
            state.nextSubscriberID += 1
            state.subscribers.append(subscriber)
            return .success(id)
        }
        return BusSubscription(token: SubscriptionToken(channel: self, id: try result.get()))
    }

    /// Ends every subscription (their iterators return nil) and refuses new ones.
    public func finish() {
        state.withLock { state in
            state.finished = true
            for subscriber in state.subscribers { subscriber.waiter?.resume() }
            state.subscribers.removeAll()
        }
    }

    /// The number of live subscriptions.
    public var subscriberCount: Int { state.withLock { $0.subscribers.count } }

    /// Takes everything waiting for subscriber `id`, suspending until there is something.
    /// Nil when the subscription has ended.
    ///
    /// A waiting subscriber is woken with a signal, not handed the one event that woke it: by the
    /// time its task runs, the publisher has usually appended more, and it takes them all at once.
    @inlinable
    func take(_ id: Int) async -> [BusDelivery<Payload>]? {
        while true {
            let immediate: [BusDelivery<Payload>]?? = state.withLock { state in
                guard let index = state.index(of: id) else { return .some(nil) }
                if state.subscribers[index].buffer.isEmpty { return .none }
                return .some(state.subscribers[index].takeBuffer())
            }
            if let immediate { return immediate }
            if Task.isCancelled {
                unsubscribe(id)
                return nil
            }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let ready = state.withLock { state -> Bool in
                        guard let index = state.index(of: id), state.subscribers[index].buffer.isEmpty else { return true }
                        state.subscribers[index].waiter = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            } onCancel: {
                self.unsubscribe(id)
            }
        }
    }

    @usableFromInline
    func unsubscribe(_ id: Int) {
        state.withLock { state in
            guard let index = state.index(of: id) else { return }
            state.subscribers.remove(at: index).waiter?.resume()
        }
    }
}

extension BusChannel.State {
    @inlinable
    /// Appends one event to the window and every subscriber; collects the waiters to wake.
    mutating func record(_ payload: Payload, revision: UInt64, window: Int, wake: inout [CheckedContinuation<Void, Never>]) {
        lastRevision = revision
        if window > 0 {
            if self.window.count < window {
                self.window.append((revision, payload))
            } else {
                evictedThrough = self.window[windowStart].0
                self.window[windowStart] = (revision, payload)
                windowStart += 1
                if windowStart == window { windowStart = 0 }
            }
        } else {
            evictedThrough = revision
        }
        for index in subscribers.indices {
            subscribers[index].deliver(.event(revision: revision, payload: payload), revision: revision)
            if let waiter = subscribers[index].waiter {
                subscribers[index].waiter = nil
                wake.append(waiter)
            }
        }
    }
}

extension BusChannel.Subscriber {
    @inlinable
    mutating func deliver(_ delivery: BusDelivery<Payload>, revision: UInt64) {
        if buffer.count >= capacity {
            // Too slow: drop what is buffered, leave one marker saying what was lost.
            buffer.removeAll(keepingCapacity: true)
            buffer.append(.resync(revision: revision))
        } else {
            buffer.append(delivery)
        }
    }

    /// Hands over the buffer. The next one starts small: reserving what a burst reached would
    /// fault in megabytes for a subscriber that usually takes a few events at a time.
    @inlinable
    mutating func takeBuffer() -> [BusDelivery<Payload>] {
        var taken: [BusDelivery<Payload>] = []
        taken.reserveCapacity(Swift.min(buffer.count, 256))
        swap(&taken, &buffer)
        return taken
    }
}

/// Ends its subscription when the last copy of the sequence and its iterators is gone.
@usableFromInline
final class SubscriptionToken<Payload: Sendable>: Sendable {
    @usableFromInline let channel: BusChannel<Payload>
    @usableFromInline let id: Int

    init(channel: BusChannel<Payload>, id: Int) {
        self.channel = channel
        self.id = id
    }

    deinit { channel.unsubscribe(id) }
}

/// The events of one subscription, in publish order. Iterate once.
public struct BusSubscription<Payload: Sendable>: AsyncSequence, Sendable {
    public typealias Element = BusDelivery<Payload>
    @usableFromInline let token: SubscriptionToken<Payload>

    init(token: SubscriptionToken<Payload>) { self.token = token }

    /// Ends the subscription; a waiting iterator returns nil.
    public func cancel() { token.channel.unsubscribe(token.id) }

    @inlinable
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(token: token) }

    @frozen
    public struct AsyncIterator: AsyncIteratorProtocol {
        @usableFromInline let token: SubscriptionToken<Payload>
        @usableFromInline var batch: [BusDelivery<Payload>]
        @usableFromInline var index: Int

        @inlinable
        init(token: SubscriptionToken<Payload>) {
            self.token = token
            self.batch = []
            self.index = 0
        }

        @inlinable
        public mutating func next() async -> BusDelivery<Payload>? {
            if index < batch.count {
                index += 1
                return batch[index - 1]
            }
            guard let fresh = await token.channel.take(token.id) else {
                batch = []
                return nil
            }
            batch = fresh
            index = 1
            return batch[0]
        }

        /// Everything delivered and not yet read, at least one delivery, in publish order; nil
        /// when the subscription has ended (SDK 1.6). A consumer that writes what it reads (a
        /// watch stream) pays its per-write cost once per batch instead of once per event.
        /// May be mixed with ``next()``.
        @inlinable
        public mutating func nextBatch() async -> ArraySlice<BusDelivery<Payload>>? {
            if index < batch.count {
                let rest = batch[index...]
                index = batch.count
                return rest
            }
            guard let fresh = await token.channel.take(token.id) else {
                batch = []
                index = 0
                return nil
            }
            batch = fresh
            index = fresh.count
            return fresh[...]
        }
    }
}
