import CapstanAPI
import CapstanCore
import Foundation
import Testing
@testable import CapstanServer

/// A watch line made from the stored JSON (etcd) says exactly what encoding the event says.
struct EncodedEventsTests {
    @Test(arguments: [ResourceEvent.Change.added, .modified, .deleted])
    func aLineSplicedFromTheStoredFormDecodesToTheSameEvent(change: ResourceEvent.Change) throws {
        var workload = Workload(name: "web", spec: WorkloadSpec(replicas: 2, template: InstanceTemplate(command: ["sleep", "1"])))
        workload.metadata.uid = "u-1"
        workload.metadata.labels = ["app": "web"]
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let stored = Array(try encoder.encode(AnyResource.workload(workload)))   // as stored: no revision
        let line = try #require(EncodedEvents.spliced(stored, change: change, revision: 42))
        #expect(line.last == UInt8(ascii: "\n"))
        let decoded = try JSONDecoder().decode(WatchEvent.self, from: Data(line.dropLast()))
        var expected = workload
        expected.metadata.revision = 42
        let reference = WatchEvent(ResourceEvent(change, .workload(expected)), revision: 42)
        #expect(decoded.type == reference.type && decoded.revision == 42)
        #expect(decoded.object == reference.object)
        // Through the cache, the same line.
        let events = EncodedEvents(storedForm: { $0 == 42 ? stored : nil })
        let cached = try events.line(ResourceEvent(change, .workload(expected)), revision: 42)
        #expect(Array(cached.readableBytesView) == line)
    }

    @Test func anEmptyMetadataObjectGetsTheRevisionWithoutAComma() throws {
        let line = try #require(EncodedEvents.spliced(Array(#"{"kind":"X","metadata":{}}"#.utf8), change: .added, revision: 7))
        #expect(String(decoding: line, as: UTF8.self) == #"{"type":"Added","revision":7,"object":{"kind":"X","metadata":{"revision":7}}}"# + "\n")
        #expect(EncodedEvents.spliced(Array(#"{"kind":"X"}"#.utf8), change: .added, revision: 7) == nil)
    }
}
