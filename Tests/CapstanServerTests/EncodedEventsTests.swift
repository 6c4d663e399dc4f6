import CapstanAPI
import CapstanCore
import CapstanStore
import Foundation
import Testing
@testable import CapstanServer

/// A watch line made from the JSON the store wrote says exactly what encoding the event says.
struct EncodedEventsTests {
    @Test(arguments: [ResourceEvent.Change.added, .modified, .deleted], [false, true])
    func aLineMadeFromTheStoredFormDecodesToTheSameEvent(change: ResourceEvent.Change, carriesRevision: Bool) throws {
        var workload = Workload(name: "web", spec: WorkloadSpec(replicas: 2, template: InstanceTemplate(command: ["sleep", "1"])))
        workload.metadata.uid = "u-1"
        workload.metadata.labels = ["app": "web"]
        var expected = workload
        expected.metadata.revision = 42
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        // As stored: etcd without the revision, SQLite with it.
        let stored = Array(try encoder.encode(AnyResource.workload(carriesRevision ? expected : workload)))
        let forms = StoredForms(carriesRevision: carriesRevision)
        forms.put(42, stored)
        let object = try #require(forms.object(at: 42))
        #expect(try JSONDecoder().decode(AnyResource.self, from: Data(object)) == .workload(expected))
        #expect(forms.object(at: 41) == nil)

        let events = EncodedEvents(forms: forms)
        let line = Array(try events.line(ResourceEvent(change, .workload(expected)), revision: 42).readableBytesView)
        #expect(line.last == UInt8(ascii: "\n"))
        let decoded = try JSONDecoder().decode(WatchEvent.self, from: Data(line.dropLast()))
        let reference = WatchEvent(ResourceEvent(change, .workload(expected)), revision: 42)
        #expect(decoded.type == reference.type && decoded.revision == 42)
        #expect(decoded.object == reference.object)
    }

    @Test func anEmptyMetadataObjectGetsTheRevisionWithoutAComma() throws {
        let object = try #require(StoredForms.withRevision(Array(#"{"kind":"X","metadata":{}}"#.utf8), 7))
        #expect(String(decoding: object, as: UTF8.self) == #"{"kind":"X","metadata":{"revision":7}}"#)
        #expect(StoredForms.withRevision(Array(#"{"kind":"X"}"#.utf8), 7) == nil)
        let line = EncodedEvents.line(object: object, change: .added, revision: 7)
        #expect(String(decoding: line, as: UTF8.self) == #"{"type":"Added","revision":7,"object":{"kind":"X","metadata":{"revision":7}}}"# + "\n")
    }

    /// Without a stored form (a Secret, an old revision) the event is encoded.
    @Test func aRevisionTheStoreNoLongerHoldsIsEncoded() throws {
        let secret = AnyResource.secret(Secret(name: "s", spec: SecretSpec(data: ["k": Array("v".utf8)])))
        let events = EncodedEvents(forms: StoredForms(carriesRevision: true))
        let line = Array(try events.line(ResourceEvent(.added, secret), revision: 9).readableBytesView)
        let decoded = try JSONDecoder().decode(WatchEvent.self, from: Data(line.dropLast()))
        #expect(decoded.object == WatchEvent(ResourceEvent(.added, secret), revision: 9).object)
    }
}
