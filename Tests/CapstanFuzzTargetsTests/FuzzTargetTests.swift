import CapstanFuzzTargets
import Foundation
import Testing

/// Every fuzz target over its seeds and a spread of hostile inputs, in the test run: the fuzzers
/// themselves run outside CI's time (Sources/CapstanFuzz/fuzz.sh, numbers in docs/security.md).
@Suite struct FuzzTargetTests {
    static let hostile: [[UInt8]] = [
        [], [0], [0xff, 0xfe, 0xfd], Array(repeating: UInt8(ascii: "["), count: 10_000), Array(repeating: UInt8(ascii: "{"), count: 10_000),
        Array("a: &a [x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]".utf8),
        Array(#"{"kind":"Workload","metadata":{"name":"a"},"spec":{"replicas":1e400,"template":{"command":["x"]}}}"#.utf8),
        Array(#"{"kind":"Workload","metadata":{"name":"a"},"spec":{"template":{"terminationGracePeriodSeconds":-1e308}}}"#.utf8),
        Array("99999999999999999999999999999999Ei\n-9223372036854775808m\n1e-30\n.\n1.2.3".utf8),
        Array("1 ()))) Z".utf8), Array("9999-99-99T99:99:99Z".utf8),
    ]

    @Test(arguments: FuzzTarget.allCases)
    func aTargetSurvivesItsSeedsAndHostileInputs(_ target: FuzzTarget) {
        #expect(!target.seeds.isEmpty)
        for input in target.seeds + Self.hostile { target.run(input) }
    }
}
