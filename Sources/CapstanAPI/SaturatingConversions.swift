import CapstanCore

/// Conversions from the floating-point numbers of manifests that can never trap. Validation keeps
/// new objects in range (``FieldLimits``); these keep objects stored before the ranges were
/// checked from stopping the agent or a controller.
extension Duration {
    /// `seconds` as a duration, held to `0...FieldLimits.maxSeconds`; NaN is zero.
    public static func clampedSeconds(_ seconds: Double) -> Duration {
        guard seconds.isFinite else { return seconds.isNaN || seconds < 0 ? .zero : .seconds(Int64(FieldLimits.maxSeconds)) }
        return .milliseconds(Int64(min(max(seconds, 0), FieldLimits.maxSeconds) * 1000))
    }
}

extension Int64 {
    /// `value` rounded toward zero, held to the bounds of `Int64`; NaN is zero.
    public init(saturating value: Double) {
        if value.isNaN { self = 0 } else if value >= 9.2e18 { self = .max } else if value <= -9.2e18 { self = .min } else { self = Int64(value) }
    }
}

extension Int {
    /// `value` rounded toward zero, held to the bounds of `Int`; NaN is zero.
    public init(saturating value: Double) { self = Int(Int64(saturating: value)) }
}
