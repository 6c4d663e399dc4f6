import CapstanCore
import Testing

@Suite struct QuantityTests {
    @Test(arguments: [
        ("500m", 500), ("2", 2000), ("0.5", 500), ("1.5", 1500), ("0.0001", 1), ("1k", 1_000_000),
        ("1Ki", 1_024_000), ("512Mi", 536_870_912_000), ("2Gi", 2_147_483_648_000), ("1e3", 1_000_000),
        ("1.5Gi", 1_610_612_736_000), ("+3", 3000), ("-1", -1000), ("100n", 1), ("1M", 1_000_000_000),
    ] as [(String, Int64)])
    func parsesExactly(text: String, milli: Int64) throws {
        #expect(try Quantity(parsing: text).milliValue == milli)
    }

    @Test(arguments: ["", "abc", "1.2.3", "5Xi", "m", "--1", "1e99", "99999999999999999999Ei", "1 Gi"])
    func refusesMalformed(text: String) {
        #expect(throws: QuantityParseError.self) { try Quantity(parsing: text) }
    }

    @Test func namesWhatIsWrong() {
        do {
            _ = try Quantity(parsing: "5Xi")
            Issue.record("expected a failure")
        } catch {
            #expect(error.description.contains("\"5Xi\""))
            #expect(error.reason.contains("unknown suffix \"Xi\""))
        }
    }

    @Test(arguments: [("500m", "500m"), ("0.5", "500m"), ("2", "2"), ("2000m", "2"), ("512Mi", "512Mi"), ("1536Mi", "1536Mi"), ("1024Mi", "1Gi"), ("1000k", "1M"), ("1e3", "1k"), ("0", "0")])
    func printsCanonically(text: String, printed: String) throws {
        #expect(try Quantity(parsing: text).description == printed)
    }

    @Test func roundTripsThroughPrinting() throws {
        for text in ["1", "250m", "3Gi", "7Ki", "12M", "999m", "1Pi"] {
            let quantity = try Quantity(parsing: text)
            #expect(try Quantity(parsing: quantity.description) == quantity)
        }
    }

    @Test func valueRoundsUp() throws {
        #expect(try Quantity(parsing: "1500m").value == 2)
        #expect(try Quantity(parsing: "2").value == 2)
    }
}
