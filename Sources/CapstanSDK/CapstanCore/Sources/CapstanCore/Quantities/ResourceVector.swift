/// Resource amounts as numbers, for arithmetic on the scheduling hot path.
///
/// Frozen: its layout is part of the SDK's ABI, so plugins read it without indirection.
@frozen
public struct ResourceVector: Sendable, Hashable, Codable {
    /// CPU in millicores.
    public var cpuMilli: Int64
    /// Memory in bytes.
    public var memoryBytes: Int64
    /// Extended resources (`gpu`, `gpu-milli`, vendor names) in whole units.
    public var extended: [String: Int64]

    @inlinable
    public init(cpuMilli: Int64 = 0, memoryBytes: Int64 = 0, extended: [String: Int64] = [:]) {
        self.cpuMilli = cpuMilli
        self.memoryBytes = memoryBytes
        self.extended = extended
    }

    /// The amount of one named resource (cpu in millicores, memory in bytes, others in units).
    @inlinable
    public subscript(name: String) -> Int64 {
        get {
            switch name {
            case ResourceName.cpu: return cpuMilli
            case ResourceName.memory: return memoryBytes
            default: return extended[name] ?? 0
            }
        }
        set {
            switch name {
            case ResourceName.cpu: cpuMilli = newValue
            case ResourceName.memory: memoryBytes = newValue
            default: extended[name] = newValue == 0 ? nil : newValue
            }
        }
    }

    /// True when every amount in `request` is available in `self`.
    @inlinable
    public func covers(_ request: ResourceVector) -> Bool {
        guard request.cpuMilli <= cpuMilli, request.memoryBytes <= memoryBytes else { return false }
        for (name, amount) in request.extended where amount > (extended[name] ?? 0) { return false }
        return true
    }

    /// The names of resources in `request` that `self` cannot cover, for "insufficient cpu" reasons.
    public func shortfalls(for request: ResourceVector) -> [String] {
        var names: [String] = []
        if request.cpuMilli > cpuMilli { names.append(ResourceName.cpu) }
        if request.memoryBytes > memoryBytes { names.append(ResourceName.memory) }
        for name in request.extended.keys.sorted() where request.extended[name]! > (extended[name] ?? 0) {
            names.append(name)
        }
        return names
    }

    @inlinable
    public static func + (lhs: ResourceVector, rhs: ResourceVector) -> ResourceVector {
        var sum = lhs
        sum += rhs
        return sum
    }

    /// Adds amount by amount. Saturates at `Int64.max`/`.min` instead of trapping, so sums
    /// over objects stored before their ranges were checked can never stop a loop.
    @inlinable
    public static func += (lhs: inout ResourceVector, rhs: ResourceVector) {
        lhs.cpuMilli = saturatingSum(lhs.cpuMilli, rhs.cpuMilli)
        lhs.memoryBytes = saturatingSum(lhs.memoryBytes, rhs.memoryBytes)
        for (name, amount) in rhs.extended { lhs.extended[name] = saturatingSum(lhs.extended[name] ?? 0, amount) }
    }

    /// `a + b`, held at the bounds of `Int64` on overflow.
    @inlinable
    public static func saturatingSum(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        if !overflow { return sum }
        return b > 0 ? .max : .min
    }

    /// `a - b`, held at the bounds of `Int64` on overflow.
    @inlinable
    public static func saturatingDifference(_ a: Int64, _ b: Int64) -> Int64 {
        let (difference, overflow) = a.subtractingReportingOverflow(b)
        if !overflow { return difference }
        return b > 0 ? .min : .max
    }

    @inlinable
    public static func - (lhs: ResourceVector, rhs: ResourceVector) -> ResourceVector {
        var difference = lhs
        difference -= rhs
        return difference
    }

    @inlinable
    public static func -= (lhs: inout ResourceVector, rhs: ResourceVector) {
        lhs.cpuMilli = saturatingDifference(lhs.cpuMilli, rhs.cpuMilli)
        lhs.memoryBytes = saturatingDifference(lhs.memoryBytes, rhs.memoryBytes)
        for (name, amount) in rhs.extended {
            let left = saturatingDifference(lhs.extended[name] ?? 0, amount)
            lhs.extended[name] = left == 0 ? nil : left
        }
    }
}
