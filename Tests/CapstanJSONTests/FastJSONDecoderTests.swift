import CapstanAPI
import CapstanCore
@testable import CapstanJSON
import Foundation
import PluginHost
import Testing

/// `FastJSONDecoder` must give what Foundation's `JSONDecoder` gives — the same value, or the
/// same error — and take its own path on what Capstan sends and stores.
@Suite struct FastJSONDecoderTests {
    /// Same result as Foundation (values compared by their sorted JSON, errors by their text);
    /// `fast`: decoded without falling back to Foundation.
    private static func expectSame<T: Codable>(_ type: T.Type, _ json: some Sequence<UInt8>, _ what: String, fast: Bool, trusted: Bool = false,
                                               sourceLocation: SourceLocation = #_sourceLocation) throws {
        let data = Data(json)
        var userInfo: [CodingUserInfoKey: any Sendable] = [:]
        if trusted { userInfo[.capstanTrustedDocument] = true }
        let direct = data.withUnsafeBytes { FastJSONDecoder.decodeWithoutFallback(type, from: $0, userInfo: userInfo) }
        #expect((direct != nil) == fast, "\(what): \(fast ? "fell back to Foundation" : "did not fall back to Foundation")", sourceLocation: sourceLocation)
        let foundation = JSONDecoder()
        foundation.userInfo = userInfo
        var decoder = FastJSONDecoder()
        decoder.userInfo = userInfo
        let theirs = Result { try foundation.decode(type, from: data) }
        let ours = Result { try decoder.decode(type, from: data) }
        switch (ours, theirs) {
        case (.success(let a), .success(let b)):
            #expect(try SortedJSON.encode(a) == SortedJSON.encode(b), "\(what): decoded differently", sourceLocation: sourceLocation)
            if let direct { #expect(try SortedJSON.encode(direct) == SortedJSON.encode(b), "\(what): the fast path decoded differently", sourceLocation: sourceLocation) }
        case (.failure(let a), .failure(let b)):
            #expect("\(a)" == "\(b)", "\(what): another error", sourceLocation: sourceLocation)
        case (.success, .failure(let error)):
            Issue.record("\(what): decoded where Foundation refuses: \(error)", sourceLocation: sourceLocation)
        case (.failure(let error), .success):
            Issue.record("\(what): refused where Foundation decodes: \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func everyExampleManifestDecodesAsFoundationDecodesIt() throws {
        var objects = 0
        for (file, read) in ExampleManifests.all() {
            for object in read {
                let json = try SortedJSON.encode(object)
                try Self.expectSame(AnyResource.self, json, "\(file), strict", fast: true)
                try Self.expectSame(AnyResource.self, json, "\(file), trusted", fast: true, trusted: true)
                // Pretty-printed with unsorted keys reads the same.
                let pretty = JSONEncoder()
                pretty.outputFormatting = .prettyPrinted
                try Self.expectSame(AnyResource.self, try pretty.encode(object), "\(file), pretty", fast: true)
                objects += 1
            }
            try Self.expectSame(ObjectList.self, try SortedJSON.encode(ObjectList(kind: "Mixed", revision: 7, items: read)), "\(file) as a list", fast: true, trusted: true)
        }
        #expect(objects >= 10, "the examples gave only \(objects) objects to compare")
    }

    @Test func aRunningInstanceAndItsWatchEventDecodeOnTheFastPath() throws {
        let instance = ExampleManifests.runningInstance()
        try Self.expectSame(AnyResource.self, try SortedJSON.encode(AnyResource.instance(instance)), "an instance", fast: true)
        try Self.expectSame(WatchEvent.self, try SortedJSON.encode(WatchEvent(ResourceEvent(.modified, .instance(instance)), revision: 42)), "a watch event", fast: true, trusted: true)
    }

    /// The public fast path: a value for what it decodes alone, nil for what Foundation must
    /// judge — the API relies on it to skip its own duplicate-key scan.
    @Test func theFastPathAloneGivesNilWhereFoundationMustJudge() throws {
        let decoder = FastJSONDecoder()
        let event = Event(name: "e", spec: EventSpec(involvedObject: "Node/n", reason: "R", message: "m", source: "s"))
        let plain = String(decoding: try SortedJSON.encode(AnyResource.event(event)), as: UTF8.self)
        #expect(plain.contains(#""name":"e""#) && plain.contains(#""reason":"R""#) && plain.contains(#""kind":"Event""#))
        #expect(decoder.decodeOnFastPath(AnyResource.self, from: Data(plain.utf8))?.name == "e")
        for json in [
            plain.replacingOccurrences(of: #""name":"e""#, with: #""name":"e","name":"f""#),  // a key twice
            plain.replacingOccurrences(of: #""name":"e""#, with: #""colour":"red","name":"e""#),  // unknown key (strict)
            plain.replacingOccurrences(of: #""kind":"Event""#, with: #""kind":"Evnt""#),  // an error
            String(plain.dropLast()),  // malformed
        ] {
            #expect(decoder.decodeOnFastPath(AnyResource.self, from: Data(json.utf8)) == nil, "\(json)")
        }
    }

    private struct Labels: Codable { var labels: [String: String] }

    /// Labels and annotations are read without a keyed container; the dictionary, or the
    /// error, is Foundation's.
    @Test func stringDictionariesDecodeOnTheFastPathAsFoundationDoes() throws {
        let cases: [(String, Bool)] = [
            (#"{"labels":{}}"#, true),
            (#"{"labels":{"app":"web","capstan.dev\/workload":"a\/b \"q\"","tier":"é😀"}}"#, true),
            (#"{"labels":{"n":1}}"#, true),          // not a string: Foundation's error
            (#"{"labels":{"n":null}}"#, true),
            (#"{"labels":["a"]}"#, true),
            (#"{"labels":{"é":"x"}}"#, false),       // a key outside ASCII is Foundation's
            (#"{"labels":{"a":"x","a":"y"}}"#, false),  // so is a key twice
        ]
        for (json, fast) in cases {
            // A document that throws is decoded again by Foundation, so only one that decodes
            // can be on the fast path.
            let decodes = (try? JSONDecoder().decode(Labels.self, from: Data(json.utf8))) != nil
            try Self.expectSame(Labels.self, Array(json.utf8), json, fast: fast && decodes)
        }
    }

    private struct Text: Codable { var text: String }

    @Test func stringsAreUnescapedAsFoundationUnescapesThem() throws {
        let cases: [(String, Bool)] = [
            (#""plain""#, true), (#""a\/b \"q\" \\ \b\f\n\r\t""#, true), (#""\u00e9\u4e2d\ud83d\ude00 é😀""#, true), (#""\u0000""#, true),
            (#""\ud83d""#, false), (#""\ude00x""#, false), (#""\ud83d\u0041""#, false),  // lone or broken surrogates
            (#""\x""#, false), ("\"tab\there\"", false), (#""\u12""#, false), (#""open"#, false),
        ]
        for (string, fast) in cases {
            try Self.expectSame(Text.self, Array("{\"text\":\(string)}".utf8), "the string \(string)", fast: fast)
        }
        // Not UTF-8: Foundation's to refuse.
        try Self.expectSame(Text.self, Array(#"{"text":""#.utf8) + [0xFF, 0xFE] + Array(#""}"#.utf8), "bytes that are not UTF-8", fast: false)
        try Self.expectSame(Text.self, Array(#"{"text":"x","other":""#.utf8) + [0xC3] + Array(#""}"#.utf8), "a skipped value that is not UTF-8", fast: false)
        // Keys are compared unescaped (Foundation writes every slash as `\/`).
        try Self.expectSame(Text.self, Array(#"{"t\u0065xt":"x"}"#.utf8), "an escaped key", fast: true)
        try Self.expectSame([String: String].self, Array(#"{"capstan.dev\/workload":"web","":"empty","\u0041":"A"}"#.utf8), "keys with escapes", fast: true)
        try Self.expectSame([String: String].self, Array(#"{"\ud83d\ude00":"smile"}"#.utf8), "an escaped key outside ASCII", fast: false)
        try Self.expectSame([String: String].self, Array(#"{"a/b":"1","a\/b":"2"}"#.utf8), "one key written two ways", fast: false)
        try Self.expectSame([String: String].self, Array(#"{"\ud83d":"lone"}"#.utf8), "a key with a lone surrogate", fast: false)
    }

    private struct Numbers: Codable {
        var int: Int?
        var int8: Int8?
        var uint: UInt64?
        var double: Double?
    }

    @Test func numbersAreReadAsFoundationReadsThem() throws {
        let fastCases = [#"{"int":42}"#, #"{"int":-9223372036854775808}"#, #"{"int":9223372036854775807}"#, #"{"int":-0}"#, #"{"int8":-128}"#,
                         #"{"uint":18446744073709551615}"#, #"{"double":0.1}"#, #"{"double":-2.5e-3}"#, #"{"double":1E+21}"#, #"{"double":12345678901234567890}"#,
                         #"{"int":null,"double":null}"#, "{}", " { \"int\" : 1 } \n"]
        for json in fastCases { try Self.expectSame(Numbers.self, Array(json.utf8), json, fast: true) }
        let foundationCases = [#"{"int":1.0}"#, #"{"int":1e2}"#, #"{"int":9223372036854775808}"#, #"{"int8":128}"#, #"{"uint":-1}"#, #"{"uint":-0}"#,
                               #"{"double":1e400}"#, #"{"int":01}"#, #"{"int":1.}"#, #"{"int":-}"#, #"{"int":"1"}"#, #"{"double":true}"#]
        for json in foundationCases { try Self.expectSame(Numbers.self, Array(json.utf8), json, fast: false) }
    }

    /// A type that catches one reading's error and tries another must read the same way:
    /// where the fast path gives up, the whole document goes to Foundation.
    private struct IntOrText: Codable {
        var value: String
        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let number = try? container.decode(Int.self) { value = "int \(number)" } else { value = try container.decode(String.self) }
        }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(value)
        }
    }

    @Test func aTypeThatCatchesAndRetriesReadsAsWithFoundation() throws {
        try Self.expectSame([IntOrText].self, Array(#"[5,"five"]"#.utf8), "an int and a string", fast: true)
        try Self.expectSame([IntOrText].self, Array(#"[5.0]"#.utf8), "a fraction where an int is tried first", fast: false)
    }

    @Test func malformedDocumentsGetFoundationsErrors() throws {
        let documents = ["", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "[1 2]", "tru", "nul", "{\"kind\":\"Workload\"} x", "\u{FEFF}{}", "[\"a\"", "{\"kind\":}"]
        for json in documents {
            try Self.expectSame(AnyResource.self, Array(json.utf8), "the document \(json.debugDescription)", fast: false)
        }
        try Self.expectSame(AnyResource.self, Array(String(repeating: "[", count: 10_000).utf8), "10,000 open brackets", fast: false)
        try Self.expectSame([String: Int].self, Array(#"{"a":1,"a":2}"#.utf8), "a key twice", fast: false)
        let many = (0..<40).map { "\"k\($0 % 39)\":\($0)" }.joined(separator: ",")
        try Self.expectSame([String: Int].self, Array("{\(many)}".utf8), "a key twice among 40", fast: false)
    }

    @Test func strictDecodingRefusesWhatFoundationRefuses() throws {
        let unknown = #"{"apiVersion":"capstan/v1","kind":"Workload","metadata":{"name":"web","colour":"red"},"spec":{"replicas":1,"template":{"command":["sleep","1"]}}}"#
        try Self.expectSame(AnyResource.self, Array(unknown.utf8), "an unknown key", fast: false)
        try Self.expectSame(AnyResource.self, Array(unknown.utf8), "an unknown key, trusted", fast: true, trusted: true)
        let missing = #"{"apiVersion":"capstan/v1","kind":"Workload","metadata":{"name":"web"}}"#
        try Self.expectSame(AnyResource.self, Array(missing.utf8), "no spec", fast: false)
        let wrongType = #"{"apiVersion":"capstan/v1","kind":"Workload","metadata":{"name":"web"},"spec":{"replicas":"one","template":{"command":["sleep"]}}}"#
        try Self.expectSame(AnyResource.self, Array(wrongType.utf8), "replicas as a string", fast: false)
    }

    @Test func aLargeMapDecodesOnTheFastPath() throws {
        let map = Dictionary(uniqueKeysWithValues: (0..<5_000).map { ("key-\($0)", "value \($0)") })
        try Self.expectSame([String: String].self, try SortedJSON.encode(map), "5,000 keys", fast: true)
        try Self.expectSame([[String: String]].self, try SortedJSON.encode([map, [:]]), "a list of maps", fast: true)
    }

    @Test func doublesTooSmallForADoubleAreFoundationsToRefuse() throws {
        for json in [#"{"double":1e-400}"#, #"{"double":-1e-400}"#, #"{"double":2e-324}"#, #"{"double":0.000001e-330}"#] {
            try Self.expectSame(Numbers.self, Array(json.utf8), json, fast: false)
        }
        for json in [#"{"double":0.0e5}"#, #"{"double":-0.0}"#, #"{"double":0E-400}"#, #"{"double":5e-324}"#] {
            try Self.expectSame(Numbers.self, Array(json.utf8), json, fast: true)
        }
    }

    /// Swift compares keys by canonical equivalence, not bytes: keys outside ASCII are Foundation's.
    private struct Kelvin: Codable {
        var value: Int
        enum CodingKeys: String, CodingKey { case value = "\u{212A}" }
    }

    @Test func keysOutsideASCIIAreComparedAsSwiftComparesThem() throws {
        try Self.expectSame([String: String].self, Array(#"{"\u00e9":"first","e\u0301":"second"}"#.utf8), "é written two ways", fast: false)
        try Self.expectSame([String: String].self, Array(#"{"é":"raw"}"#.utf8), "a raw key outside ASCII", fast: false)
        try Self.expectSame(Kelvin.self, Array(#"{"K":1}"#.utf8), "KELVIN SIGN asked for, K written", fast: false)
    }

    private struct Wide: Codable {
        var big: Int128
        var small: UInt128?
        // JSONEncoder writes neither: the comparison goes through their text.
        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode("\(big) \(small.map(String.init) ?? "-")")
        }
    }

    @Test func int128IsFoundationsToRead() throws {
        try Self.expectSame(Wide.self, Array(#"{"big":5,"small":7}"#.utf8), "Int128 and UInt128", fast: false)
    }

    /// Asks for every key of an object in reverse order: quadratic in a scan, so past the
    /// lookup budget Foundation's hashed lookups take over (same value, linear work).
    private struct Backwards: Codable {
        var values: [String: Int]
        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: AnyCodingKey.self)
            var values: [String: Int] = [:]
            for key in container.allKeys.reversed() { values[key.stringValue] = try container.decode(Int.self, forKey: key) }
            self.values = values
        }
        func encode(to encoder: any Encoder) throws { try values.encode(to: encoder) }
    }

    @Test func keyLookupsStayLinearWhateverTheOrder() throws {
        let members = (0..<20_000).map { "\"k\($0)\":\($0)" }.joined(separator: ",")
        // ResourceList reads each key twice (a string, else a number): the key found last is
        // compared first, so this stays on the fast path.
        try Self.expectSame(ResourceList.self, Array("{\(members)}".utf8), "20,000 numeric quantities", fast: true)
        try Self.expectSame(Backwards.self, Array("{\(members)}".utf8), "20,000 keys asked for backwards", fast: false)
        let few = (0..<40).map { "\"k\($0)\":\($0)" }.joined(separator: ",")
        try Self.expectSame(Backwards.self, Array("{\(few)}".utf8), "40 keys asked for backwards", fast: true)
    }
}
