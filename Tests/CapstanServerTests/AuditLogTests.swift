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

    /// Lines recorded at once from many tasks (no lock of ours: appends) come out whole, each
    /// on its own line, in a file only its owner reads.
    @Test func concurrentRecordsAreWholeLinesInAFileOnlyItsOwnerReads() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("audit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("audit.log").path
        do {
            let log = try AuditLog(path: path)
            await withTaskGroup(of: Void.self) { group in
                for task in 0..<8 {
                    group.addTask {
                        for index in 0..<250 { log.record(principal: "admin:t\(task)", method: "POST", path: "/v1/events/e\(task)-\(index)", code: 201) }
                    }
                }
            }
        }
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2_000)
        var paths = Set<String>()
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            paths.insert(try #require(object["path"] as? String))
        }
        #expect(paths.count == 2_000)
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
        #expect(mode & 0o077 == 0, "audit.log is \(String(mode, radix: 8)); it must be 0600")
    }

    /// A log that cannot be opened stops the server with the file's name, rather than letting it
    /// run without an audit trail.
    @Test func aLogThatCannotBeOpenedIsAnErrorNamingIt() {
        let path = "/nonexistent-\(UUID().uuidString)/audit.log"
        #expect {
            _ = try AuditLog(path: path)
        } throws: { error in
            "\(error)".contains("cannot open the audit log \(path)")
        }
    }
}
