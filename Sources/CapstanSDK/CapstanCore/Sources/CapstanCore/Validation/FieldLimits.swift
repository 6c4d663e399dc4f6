/// The documented range of every number a manifest can hold (docs/reference.md lists them).
///
/// Validation refuses a value outside its range and names the field, so no controller, agent or
/// plugin ever does arithmetic on a number that could overflow or trap. The ranges are generous
/// for real use and small enough that sums over a whole cluster stay far inside `Int64`.
public enum FieldLimits {
    /// Durations in seconds (probe delays, periods and timeouts, restart back-off, grace
    /// periods): at most 365 days.
    public static let maxSeconds: Double = 31_536_000
    /// Replicas of one workload, and its rollout budgets (`maxSurge`, `maxUnavailable`).
    public static let maxReplicas = 10_000
    /// Probe thresholds (`failureThreshold`, `successThreshold`).
    public static let maxProbeThreshold = 10_000
    /// CPU in one resource list: one million cores, in millicores.
    public static let maxCPUMilli: Int64 = 1_000_000_000
    /// Memory (and volume sizes) in one resource list: 1 PiB.
    public static let maxMemoryBytes: Int64 = 1 << 50
    /// Any other resource in one list (`gpu`, vendor resources), in whole units.
    public static let maxExtendedUnits: Int64 = 1_000_000
    /// `gpu-milli` in an instance's requests: a share of one GPU, 0 to 1000.
    public static let maxGPUMilli: Int64 = 1000
    /// One object as stored (its JSON), like etcd's default request limit.
    public static let maxObjectBytes = 1_572_864
    /// Entries in one list field of a template (ports, volume mounts, command arguments, env).
    public static let maxListEntries = 1_000
}

extension ValidationProblem {
    /// A problem when `value` (seconds) is not a finite number within `0...FieldLimits.maxSeconds`
    /// (or above zero when `positive`).
    static func seconds(_ value: Double, at path: String, positive: Bool = false) -> ValidationProblem? {
        guard value.isFinite else {
            return ValidationProblem(path: path, message: "\(value) is not a number of seconds; give 0 to \(Int(FieldLimits.maxSeconds))")
        }
        if positive && value <= 0 {
            return ValidationProblem(path: path, message: "\(value) must be more than 0 (at most \(Int(FieldLimits.maxSeconds)) seconds)")
        }
        if value < 0 {
            return ValidationProblem(path: path, message: "\(value) is negative; give 0 to \(Int(FieldLimits.maxSeconds)) seconds")
        }
        if value > FieldLimits.maxSeconds {
            return ValidationProblem(path: path, message: "\(value) is more than \(Int(FieldLimits.maxSeconds)) seconds (365 days), the longest duration Capstan accepts")
        }
        return nil
    }

    /// A problem when `value` is outside `range`.
    static func count(_ value: Int, at path: String, in range: ClosedRange<Int>) -> ValidationProblem? {
        if range.contains(value) { return nil }
        if value < 0 && range.lowerBound == 0 {
            return ValidationProblem(path: path, message: "\(value) is negative; give 0 to \(range.upperBound)")
        }
        return ValidationProblem(path: path, message: "\(value) is out of range; give \(range.lowerBound) to \(range.upperBound)")
    }
}
