import CapstanCore
import Foundation

/// Event bus throughput against a plain AsyncStream, in the same run.
///
/// One publisher task publishes N events; 1 or 4 subscriber tasks each consume all of them.
/// Time runs from the first publish to the last event consumed by every subscriber. Buffers are
/// sized so nothing is dropped (AsyncStream is unbounded), so both sides deliver every event.
enum BusBenchmark {
    static let events = 5_000_000

    static func run() async {
        print("## Event bus: \(events / 1_000_000) M events, one publisher (median of 5, range in brackets)\n")
        print("| subscribers | Capstan bus (M events/s) | AsyncStream (M events/s) | bus / AsyncStream |")
        print("|---|---|---|---|")
        for subscribers in [1, 4] {
            var bus: [Double] = []
            var stream: [Double] = []
            for _ in 0..<5 {
                bus.append(await busRun(subscribers: subscribers))
                stream.append(await streamRun(subscribers: subscribers))
            }
            let b = Double(events) / median(bus) / 1e6, s = Double(events) / median(stream) / 1e6
            func range(_ seconds: [Double]) -> String {
                "[\(format(Double(events) / seconds.max()! / 1e6, 2))–\(format(Double(events) / seconds.min()! / 1e6, 2))]"
            }
            print("| \(subscribers) | \(format(b, 2)) \(range(bus)) | \(format(s, 2)) \(range(stream)) | \(format(b / s, 1))× |")
        }
        print("\n(events/s counts published events; with 4 subscribers each is delivered 4 times.)\n")
    }

    static func busRun(subscribers: Int) async -> Double {
        let channel = BusChannel<Int>(subscriberCapacity: events + 1, replayWindow: 0)
        let subscriptions = (0..<subscribers).map { _ in try! channel.subscribe() }
        return await measure {
            await withTaskGroup(of: Int.self) { group in
                for subscription in subscriptions {
                    group.addTask {
                        var count = 0
                        for await delivery in subscription {
                            if case .event = delivery { count += 1 } else { fatalError("dropped events") }
                            if count == events { break }
                        }
                        return count
                    }
                }
                group.addTask {
                    for value in 0..<events { channel.publish(value) }
                    return 0
                }
                for await _ in group {}
            }
        }
    }

    static func streamRun(subscribers: Int) async -> Double {
        let pairs = (0..<subscribers).map { _ in AsyncStream<Int>.makeStream(bufferingPolicy: .unbounded) }
        return await measure {
            await withTaskGroup(of: Int.self) { group in
                for (stream, _) in pairs {
                    group.addTask {
                        var count = 0
                        for await _ in stream {
                            count += 1
                            if count == events { break }
                        }
                        return count
                    }
                }
                group.addTask {
                    for value in 0..<events { for (_, continuation) in pairs { continuation.yield(value) } }
                    for (_, continuation) in pairs { continuation.finish() }
                    return 0
                }
                for await _ in group {}
            }
        }
    }
}
