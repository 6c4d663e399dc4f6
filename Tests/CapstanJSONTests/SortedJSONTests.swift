import CapstanAPI
import CapstanCore
@testable import CapstanJSON
import Foundation
import PluginHost
import Testing

/// `SortedJSON` must write exactly what Foundation's `JSONEncoder` with `.sortedKeys` writes:
/// the store compares stored specs by their text, and watchers get that text as it is.
@Suite struct SortedJSONTests {
    private static func foundation<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return Array(try encoder.encode(value))
    }

    /// Same text as Foundation; `fast`: written without falling back to Foundation.
    private static func expectSame<T: Encodable>(_ value: T, _ what: String, fast: Bool = true, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let direct = try SortedJSON.encodeWithoutFallback(value)
        #expect((direct != nil) == fast, "\(what): \(fast ? "fell back to Foundation" : "did not fall back to Foundation")", sourceLocation: sourceLocation)
        let ours = try SortedJSON.encode(value)
        let theirs = try foundation(value)
        #expect(ours == theirs, "\(what):\n ours   \(String(decoding: ours, as: UTF8.self))\n theirs \(String(decoding: theirs, as: UTF8.self))", sourceLocation: sourceLocation)
    }

    @Test func everyExampleManifestIsWrittenAsFoundationWritesIt() throws {
        var objects = 0
        for (file, read) in ExampleManifests.all() {
            for object in read {
                try Self.expectSame(object, file)
                objects += 1
            }
            try Self.expectSame(ObjectList(kind: "Mixed", revision: 7, items: read), "\(file) as a list")
        }
        #expect(objects >= 10, "the examples gave only \(objects) objects to compare")
    }

    @Test func stringsAreEscapedAsFoundationEscapesThem() throws {
        var controls = ""
        for scalar in 0..<0x20 { controls.unicodeScalars.append(Unicode.Scalar(UInt8(scalar))) }
        for text in ["", "plain", "a/b", "quote \" and \\ backslash", controls, "\u{7f}é😀\u{301}中", "tab\tnew\nline\r", String(repeating: "/", count: 300)] {
            try Self.expectSame(text, "the string \(text.debugDescription)")
            try Self.expectSame([text: text], "a key \(text.debugDescription)")
        }
    }

    @Test func numbersAreWrittenAsFoundationWritesThem() throws {
        let doubles: [Double] = [0, -0.0, 1, -1, 0.1, 2.5, 100, 1e15, 1e16, 1e20, 1e-7, 123456789012345680, .leastNonzeroMagnitude, .greatestFiniteMagnitude, 3.0e-5, 86400, 0.3]
        for value in doubles {
            try Self.expectSame(value, "the double \(value)")
            if Float(value).isFinite { try Self.expectSame(Float(value), "the float \(Float(value))") }
        }
        try Self.expectSame([Int.min, Int.max, 0, -1, 42], "ints")
        try Self.expectSame([Int64.min, Int64.max], "int64s")
        try Self.expectSame([UInt64.max, 0], "uint64s")
        try Self.expectSame([Int8.min, Int8.max], "int8s")
        try Self.expectSame([Int32.min, Int32.max], "int32s")
        try Self.expectSame([true, false], "bools")
        try Self.expectSame([Double?.none, 1.5], "an optional in an array")
    }

    @Test func keysAreSortedAsFoundationSortsThem() throws {
        let keys = ["b", "B", "a10", "a9", "a", "_", "z", "Z", "é", "e", "中", "aa", "a-b", "a.b", "a/b", "capstan.dev/arch", "capstan.dev/os", "0", "10", "9", ""]
        try Self.expectSame(Dictionary(uniqueKeysWithValues: keys.enumerated().map { ($1, $0) }), "a map of \(keys.count) keys")
        try Self.expectSame([10: "ten", 9: "nine", -1: "minus one"], "a map with integer keys")
        // Many random maps: any order the dictionary happens to iterate in comes out sorted.
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var map: [String: String] = [:]
            for _ in 0..<Int.random(in: 0...40, using: &generator) {
                let length = Int.random(in: 1...8, using: &generator)
                let key = String((0..<length).map { _ in "aAbB09._-/é".randomElement(using: &generator)! })
                map[key] = key
            }
            try Self.expectSame(map, "a random map")
        }
    }

    @Test func instancesWithEveryOptionalFieldMatch() throws {
        let instance = ExampleManifests.runningInstance()
        try Self.expectSame(AnyResource.instance(instance), "an instance")
        try Self.expectSame(WatchEvent(ResourceEvent(.modified, .instance(instance)), revision: 42), "a watch event")
    }

    /// Template hashes name instances: they must not change when the encoder does (a new
    /// hash would roll every workload after an upgrade).
    @Test func templateHashesAreTheOnesFoundationGave() throws {
        struct Identity: Encodable {
            var template: InstanceTemplate
            var restartPolicy: RestartPolicy
            var restartBackoff: RestartBackoff
        }
        var template = InstanceTemplate(command: ["python3", "-m", "http.server", "$PORT"], labels: ["app": "web"], env: ["GREETING": "héllo/world"],
                                        resources: ResourceRequirements(requests: ["cpu": "100m"]), ports: [PortSpec(name: "http", containerPort: 8000)])
        template.terminationGracePeriodSeconds = 1.5
        let spec = WorkloadSpec(replicas: 3, template: template)
        let text = try Self.foundation(Identity(template: spec.template, restartPolicy: spec.restartPolicy, restartBackoff: spec.restartBackoff))
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        let hex = String(hash, radix: 16)
        #expect(TemplateHash.of(spec) == String((String(repeating: "0", count: 16 - hex.count) + hex).prefix(8)))
    }

    // MARK: What is left to Foundation

    private struct Dated: Encodable { var at = Date(timeIntervalSinceReferenceDate: 12.5); var blob = Data([1, 2, 3]); var link = URL(string: "https://x/y")! }
    private struct Nested: Encodable {
        enum Keys: String, CodingKey { case outer, inner, list }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(1, forKey: .outer)
            var inner = container.nestedContainer(keyedBy: Keys.self, forKey: .inner)
            try inner.encode("x", forKey: .list)
            var list = container.nestedUnkeyedContainer(forKey: .list)
            try list.encode(2)
        }
    }
    private struct Twice: Encodable {
        enum Keys: String, CodingKey { case key }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(1, forKey: .key)
            try container.encode(2, forKey: .key)
        }
    }
    private struct Nothing: Encodable { func encode(to encoder: any Encoder) throws {} }

    @Test func whatFoundationTreatsSpeciallyIsLeftToIt() throws {
        try Self.expectSame(Dated(), "dates, data and URLs", fast: false)
        try Self.expectSame(Nested(), "nested containers", fast: false)
        try Self.expectSame(Twice(), "a key written twice", fast: false)
        #expect(throws: EncodingError.self) { try SortedJSON.encode(Nothing()) }
        try Self.expectSame(["a": Nothing()], "a member that writes nothing")
        // A number JSON cannot hold: Foundation's error, not invalid text.
        #expect(throws: EncodingError.self) { try SortedJSON.encode(["x": Double.nan]) }
        #expect(throws: EncodingError.self) { try SortedJSON.encode([Float.infinity]) }
    }
}
