@testable import CapstanStore
import Foundation
import Testing

@Suite struct ObjectUIDTests {
    /// What `UUID().uuidString.lowercased()` gave: the same shape, version 4, the RFC 4122
    /// variant, and no two alike.
    @Test func uidsAreLowerCaseVersion4UUIDsAndUnique() throws {
        var seen = Set<String>()
        for _ in 0..<10_000 {
            let uid = ObjectUID.make()
            let parsed = try #require(UUID(uuidString: uid), "\(uid) is not a UUID")
            #expect(uid == parsed.uuidString.lowercased())
            let bytes = parsed.uuid
            #expect(bytes.6 >> 4 == 4, "version of \(uid)")
            #expect(bytes.8 >> 6 == 0b10, "variant of \(uid)")
            seen.insert(uid)
        }
        #expect(seen.count == 10_000)
    }
}
