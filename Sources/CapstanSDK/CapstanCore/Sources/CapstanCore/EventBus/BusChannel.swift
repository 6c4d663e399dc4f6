import Synchronization

/// One topic's stream: ordered, revisioned, bounded per subscriber, with a replay window.
///
/// Every publish is ordered under one lock, so every subscriber sees the same order. A subscriber
/// whose buffer is full loses its buffered events and gets a ``BusDelivery/resync(revision:)``
/// marker instead: memory stays bounded however slow it is. Subscribers take whole batches at a
/// time, so the per-event cost on the reading side is a few nanoseconds.
public final class BusChannel<Payload: Sendable>: Sendable {
    /// Events one subscriber may have waiting before it is resynced.
    public let subscriberCapacity: Int
    /// Events kept for subscribers that resume from a revision.
    public let replayWindow: Int

    struct Subscriber {
        var buffer: [BusDelivery<Payload>] = []
        /// A subscriber waiting for events; woken with a signal, it then takes the whole buffer.
        var waiter: CheckedContinuation<Void, Never>?
        var capacity: Int
    }

    struct State {
        var lastRevision: UInt64
        /// The newest revision evicted from the window; resuming after an older one is impossible.
        var evictedThrough: UInt64 = 0
        var window: [(UInt64, Payload)] = []
        var windowStart = 0
        var subscribers: [Int: Subscriber] = [:]
        var nextSubscriberID = 0
        var finished = false
    }

    let state: Mutex<State>

    public init(subscriberCapacity: Int = 4096, replayWindow: Int = 4096, startingRevision: UInt64 = 0) {
        precondition(subscriberCapacity > 0 && replayWindow >= 0)
        self.subscriberCapacity = subscriberCapacity
        self.replayWindow = replayWindow
        self.state = Mutex(State(lastRevision: startingRevision, evictedThrough: startingRevision))
    }

    /// The revision of the newest event published.
    public var lastRevision: UInt64 { state.withLock { $0.lastRevision } }

    /// Publishes one event to every subscriber.
    ///
    /// - Parameter revision: the event's revision, when the caller (the store) assigns them; it
    ///   must be greater than every earlier one. Nil takes the next revision.
    /// - Returns: the event's revision.
    @discardableResult
    public func publish(_ payload: Payload, revision: UInt64? = nil) -> UInt64 {
        state.withLock { state in
            let assigned = revision ?? state.lastRevision + 1
            precondition(assigned > state.lastRevision, "bus revisions must grow: \(assigned) after \(state.lastRevision)")
            state.lastRevision = assigned
            if replayWindow > 0 {
                if state.window.count < replayWindow {
                    state.window.append((assigned, payload))
                } else {
                    state.evictedThrough = state.window[state.windowStart].0
                    state.window[state.windowStart] = (assigned, payload)
                    state.windowStart = (state.windowStart + 1) % replayWindow
                }
            } else {
                state.evictedThrough = assigned
            }
            for id in state.subscribers.keys {
                state.subscribers[id]!.deliver(.event(revision: assigned, payload: payload), revision: assigned)
            }
            return assigned
        }
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
            var subscriber = Subscriber(capacity: capacity ?? subscriberCapacity)
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
            let id = state.nextSubscriberID
            state.nextSubscriberID += 1
            state.subscribers[id] = subscriber
            return .success(id)
        }
        return BusSubscription(token: SubscriptionToken(channel: self, id: try result.get()))
    }

    /// Ends every subscription (their iterators return nil) and refuses new ones.
    public func finish() {
        state.withLock { state in
            state.finished = true
            for (_, subscriber) in state.subscribers { subscriber.waiter?.resume() }
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
    func take(_ id: Int) async -> [BusDelivery<Payload>]? {
        while true {
            let immediate: [BusDelivery<Payload>]?? = state.withLock { state in
                guard state.subscribers[id] != nil else { return .some(nil) }
                if state.subscribers[id]!.buffer.isEmpty { return .none }
                return .some(state.subscribers[id]!.takeBuffer())
            }
            if let immediate { return immediate }
            if Task.isCancelled {
                unsubscribe(id)
                return nil
            }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let ready = state.withLock { state -> Bool in
                        guard state.subscribers[id] != nil, state.subscribers[id]!.buffer.isEmpty else { return true }
                        state.subscribers[id]!.waiter = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            } onCancel: {
                self.unsubscribe(id)
            }
        }
    }

    func unsubscribe(_ id: Int) {
        state.withLock { state in
            state.subscribers.removeValue(forKey: id)?.waiter?.resume()
        }
    }
}

extension BusChannel.Subscriber {
    mutating func deliver(_ delivery: BusDelivery<Payload>, revision: UInt64) {
        if buffer.count >= capacity {
            // Too slow: drop what is buffered, leave one marker saying what was lost.
            buffer.removeAll(keepingCapacity: true)
            buffer.append(.resync(revision: revision))
        } else {
            buffer.append(delivery)
        }
        if let waiter {
            self.waiter = nil
            waiter.resume()
        }
    }

    mutating func takeBuffer() -> [BusDelivery<Payload>] {
        var taken: [BusDelivery<Payload>] = []
        taken.reserveCapacity(Swift.min(buffer.count * 2, capacity))
        swap(&taken, &buffer)
        return taken
    }
}

/// Ends its subscription when the last copy of the sequence and its iterators is gone.
final class SubscriptionToken<Payload: Sendable>: Sendable {
    let channel: BusChannel<Payload>
    let id: Int

    init(channel: BusChannel<Payload>, id: Int) {
        self.channel = channel
        self.id = id
    }

    deinit { channel.unsubscribe(id) }
}

/// The events of one subscription, in publish order. Iterate once.
public struct BusSubscription<Payload: Sendable>: AsyncSequence, Sendable {
    public typealias Element = BusDelivery<Payload>
    let token: SubscriptionToken<Payload>

    /// Ends the subscription; a waiting iterator returns nil.
    public func cancel() { token.channel.unsubscribe(token.id) }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(token: token) }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let token: SubscriptionToken<Payload>
        var batch: [BusDelivery<Payload>] = []
        var index = 0

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
    }
}
