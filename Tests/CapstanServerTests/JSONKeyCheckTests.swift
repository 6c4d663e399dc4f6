@testable import CapstanAPI
import Foundation
import Testing

/// The duplicate-key check the API runs on every JSON body, compared as bytes.
@Suite struct JSONKeyCheckTests {
    func check(_ text: String) -> JSONKeyCheck.Duplicate? { JSONKeyCheck.firstDuplicate(in: Data(text.utf8)) }

    @Test func findsADuplicateWithItsPath() {
        #expect(check(#"{"a":1,"a":2}"#) == .init(path: "", key: "a"))
        #expect(check(#"{"spec":{"template":{"env":{"A":"1","B":"2","A":"3"}}}}"#) == .init(path: "spec.template.env", key: "A"))
        #expect(check(#"{"items":[{"x":1},{"y":1,"y":2}]}"#) == .init(path: "items[1]", key: "y"))
        #expect(check(#"[[{"k":1}],[{"k":1,"k":1}]]"#) == .init(path: "[1][0]", key: "k"))
    }

    @Test func equalKeysInDifferentObjectsAreFine() {
        #expect(check(#"{"a":{"x":1},"b":{"x":1},"x":{"a":1}}"#) == nil)
        #expect(check(#"[{"x":1},{"x":2}]"#) == nil)
        // A value equal to a key, and braces, quotes and escapes inside strings.
        #expect(check(#"{"a":"a","b":"{\"a\":1,\"a\":2}","c":"\\"}"#) == nil)
    }

    @Test func escapedKeysCompareByWhatTheyMean() {
        #expect(check(#"{"a":1,"\u0061":2}"#) == .init(path: "", key: "a"))
        #expect(check(#"{"a\"b":1,"a\u0022b":2}"#) == .init(path: "", key: "a\"b"))
        #expect(check(#"{"ab":1,"a\\b":2}"#) == nil)
    }

    @Test func objectsWithManyKeysAreCheckedWithoutQuadraticWork() {
        let keys = (0..<50_000).map { "\"k\($0)\":0" }
        #expect(check("{" + keys.joined(separator: ",") + "}") == nil)
        #expect(check("{" + keys.joined(separator: ",") + ",\"k49\":1}") == .init(path: "", key: "k49"))
        // A duplicate among the first 32 keys, found before the set takes over.
        #expect(check("{" + keys.prefix(40).joined(separator: ",") + ",\"k3\":1}") == .init(path: "", key: "k3"))
    }

    /// Escaped keys are decoded once each, not once per comparison; nesting past 512 levels is
    /// left to the decoder (which refuses it), so the check keeps at most 512 frames.
    @Test func escapedKeysAndDeepNestingStayCheap() {
        let object = "{" + (0..<32).map { #""\u006b\#($0)":0"# }.joined(separator: ",") + "}"
        let many = "[" + Array(repeating: object, count: 2_000).joined(separator: ",") + "]"
        let clock = ContinuousClock()
        let started = clock.now
        #expect(check(many) == nil)
        #expect(check("[" + object + "," + object.dropLast() + #","\u006b7":1}]"#) == .init(path: "[1]", key: "k7"))
        let deep = String(repeating: "[", count: 1_000_000) + String(repeating: "]", count: 1_000_000)
        #expect(check(deep) == nil)
        #expect(check(String(repeating: "[", count: 100) + #"{"a":1,"a":2}"# + String(repeating: "]", count: 100)) == .init(path: (0..<99).map { _ in "[0]" }.joined() + "[0]", key: "a"))
        // Generous: this guards against quadratic work (minutes), not for speed.
        #expect(clock.now - started < .seconds(30))
    }

    @Test func malformedInputIsLeftToTheDecoder() {
        // What can be read is checked: a duplicate before the input breaks off is still one.
        #expect(check(#"{"a":1,"a":"#) == .init(path: "", key: "a"))
        #expect(check(#"{"a":1,"a"#) == nil)
        #expect(check(#"{"unterminated"#) == nil)
        #expect(check("") == nil)
        #expect(check("}}]]") == nil)
    }
}
