import CapstanCore
import CapstanJSON
import Foundation

/// The hash that names a workload's template generation (`hello-web-<hash>-0`): FNV-1a (64 bit)
/// over the canonical JSON of what makes instances differ (template, restart policy, backoff),
/// as 8 hex digits. The controller labels instances with it; `rollout status` computes it to
/// know when the controller has seen a change.
public enum TemplateHash {
    public static func of(_ spec: WorkloadSpec) -> String {
        struct Identity: Encodable {
            var template: InstanceTemplate
            var restartPolicy: RestartPolicy
            var restartBackoff: RestartBackoff
        }
        // SortedJSON writes what JSONEncoder's .sortedKeys wrote when these hashes were first
        // given out: the same hash, so no rollout after an upgrade.
        let data = (try? SortedJSON.encode(Identity(template: spec.template, restartPolicy: spec.restartPolicy, restartBackoff: spec.restartBackoff))) ?? []
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in data {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String((String(repeating: "0", count: max(0, 16 - hex.count)) + hex).prefix(8))
    }
}
