@testable import CapstanServer
import Testing

/// Histograms are made once per label set and then reused: the counts add up per series.
@Suite struct ServerMetricsTests {
    @Test func requestsAndDecisionsCountPerLabelSet() {
        let metrics = ServerMetrics()
        metrics.recordRequest(method: "GET", route: "list", code: 200, duration: .milliseconds(1))
        metrics.recordRequest(method: "GET", route: "list", code: 200, duration: .milliseconds(3))
        metrics.recordRequest(method: "POST", route: "create", code: 201, duration: .microseconds(200))
        metrics.recordDecision(profile: "default", placed: true, duration: .microseconds(50))
        metrics.recordDecision(profile: "default", placed: false, duration: .microseconds(50))
        let text = metrics.registry.emitToString()
        let lines = text.split(separator: "\n")
        func count(_ prefix: String) -> String? {
            lines.first { $0.hasPrefix(prefix) && $0.contains("_count") }.map { String($0.split(separator: " ").last ?? "") }
        }
        #expect(count(#"capstan_api_request_duration_seconds_count{method="GET",route="list",code="200"}"#) == "2", "\(text)")
        #expect(count(#"capstan_api_request_duration_seconds_count{method="POST",route="create",code="201"}"#) == "1")
        #expect(count(#"capstan_scheduling_duration_seconds_count{profile="default",result="placed"}"#) == "1")
        #expect(count(#"capstan_scheduling_duration_seconds_count{profile="default",result="unschedulable"}"#) == "1")
    }
}
