@testable import CapstanServer
import Foundation
import Testing

/// The audit log's lines, built by hand, are JSON that reads back to what was recorded.
@Suite struct AuditLogTests {
    @Test func aLineIsJSONWithSortedKeysAndEscapesWhatItMust() throws {
        let path = "/v1/instances/a\"b\\c\nd\u{1}é/ü"
        // 2026-11-30T19:08:07Z
        let line = AuditLog.line(time: 1_796_065_687, principal: "node:w1", method: "PUT", path: path, code: 409)
        #expect(line.last == UInt8(ascii: "\n"))
        let text = String(decoding: line.dropLast(), as: UTF8.self)
        #expect(text.hasPrefix(#"{"code":409,"method":"PUT","path":"#))
        #expect(text.hasSuffix(#","principal":"node:w1","time":"2026-11-30T19:08:07Z"}"#))
        #expect(!text.contains("\\/"), "slashes are not escaped")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
        #expect(object["path"] as? String == path)
        #expect(object["code"] as? Int == 409)
        #expect(object.count == 5)
    }

    @Test func aLongPathIsCutAt512Characters() throws {
        let line = AuditLog.line(time: 0, principal: "admin:x", method: "POST", path: "/" + String(repeating: "a", count: 2_000), code: 201)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
        #expect((object["path"] as? String)?.count == 512)
        #expect(object["time"] as? String == "1970-01-01T00:00:00Z")
    }
}
