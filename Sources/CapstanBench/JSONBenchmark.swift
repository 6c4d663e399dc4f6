import CapstanAPI
import CapstanCore
import CapstanJSON
import Foundation

/// The store's encoder against Foundation's, on what the store writes most: a bound,
/// running Instance as a workload makes it (the same text from both: the tests check that).
enum JSONBenchmark {
    static func run() {
        var template = InstanceTemplate(command: ["sleep", "1000"], labels: ["app": "web"])
        template.resources = ResourceRequirements(requests: ["cpu": "100m", "memory": "500Mi"])
        var instance = Instance(name: "many-5d8f2c1a-1234", labels: ["capstan.dev/workload": "many", "app": "web"], spec: InstanceSpec(template: template, nodeName: "node-1234"))
        instance.metadata.revision = 123_456
        instance.metadata.generation = 1
        instance.metadata.uid = UUID().uuidString.lowercased()
        instance.metadata.creationTimestamp = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
        instance.status = InstanceStatus(phase: .running, ready: true, startedAt: Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970), addresses: ["10.0.0.2"], pid: 4242)
        let object = AnyResource.instance(instance)
        let count = 20_000
        let foundation = JSONEncoder()
        foundation.outputFormatting = .sortedKeys
        var size = 0
        var foundationRuns: [Double] = [], sortedRuns: [Double] = []
        for _ in 0..<7 {
            foundationRuns.append(measure { for _ in 0..<count { size &+= (try? foundation.encode(object))?.count ?? 0 } })
            sortedRuns.append(measure { for _ in 0..<count { size &+= (try? SortedJSON.encode(object))?.count ?? 0 } })
        }
        let bytes = (try? SortedJSON.encode(object))?.count ?? 0
        func perCall(_ runs: [Double]) -> String { "\(format(median(runs) * 1e6 / Double(count), 2)) µs (\(format(runs.min()! * 1e6 / Double(count), 2))–\(format(runs.max()! * 1e6 / Double(count), 2)))" }
        print("## JSON: one stored Instance (\(bytes) bytes), sorted keys, \(count) encodes × 7 runs (median, range per encode)\n")
        print("| encoder | per encode |\n|---|---|")
        print("| Foundation JSONEncoder (.sortedKeys) | \(perCall(foundationRuns)) |")
        print("| SortedJSON (CapstanJSON) | \(perCall(sortedRuns)) |")
        print("\nspeed-up: \(format(median(foundationRuns) / median(sortedRuns), 1))× (checksum \(size % 10))\n")
        decoding(object, count: count, perCall: perCall)
    }

    /// Both decoders on the same stored text: as a watcher reads it (trusted: no unknown-key
    /// check) and as the server reads a request (strict).
    private static func decoding(_ object: AnyResource, count: Int, perCall: ([Double]) -> String) {
        guard let stored = try? SortedJSON.data(object) else { return }
        var checksum = 0
        print("## JSON: the same Instance decoded, \(count) decodes × 7 runs (median, range per decode)\n")
        print("| document | Foundation JSONDecoder | FastJSONDecoder (CapstanJSON) | speed-up |\n|---|---|---|---|")
        for trusted in [true, false] {
            let foundation = JSONDecoder()
            var fast = FastJSONDecoder()
            if trusted {
                foundation.userInfo[.capstanTrustedDocument] = true
                fast.userInfo[.capstanTrustedDocument] = true
            }
            var foundationRuns: [Double] = [], fastRuns: [Double] = []
            for _ in 0..<7 {
                foundationRuns.append(measure { for _ in 0..<count { checksum &+= (try? foundation.decode(AnyResource.self, from: stored))?.name.count ?? 0 } })
                fastRuns.append(measure { for _ in 0..<count { checksum &+= (try? fast.decode(AnyResource.self, from: stored))?.name.count ?? 0 } })
            }
            print("| \(trusted ? "trusted (as a watcher reads it)" : "strict (as the server reads a request)") | \(perCall(foundationRuns)) | \(perCall(fastRuns)) | \(format(median(foundationRuns) / median(fastRuns), 1))× |")
        }
        // What each watcher of the writes benchmark reads 20,000 times: a watch line of an Event.
        var event = Event(name: "e12345", spec: EventSpec(involvedObject: "Node/bench-node", reason: "Bench", message: "1796090000.123456", source: "bench"))
        event.metadata.revision = 123_456
        event.metadata.uid = UUID().uuidString.lowercased()
        event.metadata.creationTimestamp = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
        if let line = try? SortedJSON.data(WatchEvent(type: .added, revision: 123_456, object: .event(event))) {
            let foundation = JSONDecoder()
            foundation.userInfo[.capstanTrustedDocument] = true
            var fast = FastJSONDecoder()
            fast.userInfo[.capstanTrustedDocument] = true
            var foundationRuns: [Double] = [], fastRuns: [Double] = []
            for _ in 0..<7 {
                foundationRuns.append(measure { for _ in 0..<count { checksum &+= (try? foundation.decode(WatchEvent.self, from: line))?.object?.name.count ?? 0 } })
                fastRuns.append(measure { for _ in 0..<count { checksum &+= (try? fast.decode(WatchEvent.self, from: line))?.object?.name.count ?? 0 } })
            }
            print("| a watch line of an Event (\(line.count) bytes, trusted) | \(perCall(foundationRuns)) | \(perCall(fastRuns)) | \(format(median(foundationRuns) / median(fastRuns), 1))× |")
        }
        print("\n(checksum \(checksum % 10))\n")
    }
}
