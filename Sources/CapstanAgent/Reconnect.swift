/// The agent's waits between attempts to reach the server: 0.5 s, doubling to at most 30 s,
/// with ±20 % jitter so a fleet of agents whose server came back does not return in step (like
/// client-go's backoff manager). `reset()` after a success.
struct Reconnect {
    let initial: Double
    let maximum: Double
    private(set) var attempt = 0

    init(initial: Double = 0.5, maximum: Double = 30) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The next wait, in seconds.
    mutating func next() -> Double {
        let base = min(maximum, initial * Double(1 << min(attempt, 16)))
        attempt += 1
        return base * Double.random(in: 0.8...1.2)
    }

    mutating func reset() { attempt = 0 }

    /// Sleeps the next wait; false when cancelled.
    mutating func pause() async -> Bool {
        let seconds = next()
        do {
            try await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
            return true
        } catch {
            return false
        }
    }
}
