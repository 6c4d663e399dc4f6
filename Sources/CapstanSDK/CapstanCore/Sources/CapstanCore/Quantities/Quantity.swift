/// An exact resource amount, as written in manifests: `500m`, `2`, `1.5`, `512Mi`, `2Gi`, `1e3`.
///
/// The value is held in thousandths of the base unit (millicores for cpu, milli-bytes for memory,
/// milli-units for extended resources), so `0.5` and `500m` are the same quantity. Fractions finer
/// than a thousandth round up, as Kubernetes does. The suffix family of the text it was parsed
/// from is kept, so printing gives back a familiar form (`1536Mi` stays binary, `1k` stays decimal).
public struct Quantity: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// How the quantity prefers to be printed.
    public enum Format: Sendable, Hashable {
        /// Powers of 1024: Ki, Mi, Gi, Ti, Pi, Ei.
        case binarySI
        /// Powers of 1000: m, k, M, G, T, P, E (and plain numbers).
        case decimalSI
    }

    /// The amount in thousandths of the base unit.
    public let milliValue: Int64
    /// The suffix family used when printing.
    public let format: Format

    /// Creates a quantity from thousandths of the base unit.
    public init(milliValue: Int64, format: Format = .decimalSI) {
        self.milliValue = milliValue
        self.format = format
    }

    /// Creates a quantity of whole base units (bytes, cores, GPUs).
    public init(value: Int64, format: Format = .decimalSI) {
        self.init(milliValue: value * 1000, format: format)
    }

    /// The amount in whole base units, rounded up (`1500m` is 2).
    public var value: Int64 {
        let (quotient, remainder) = milliValue.quotientAndRemainder(dividingBy: 1000)
        return remainder > 0 ? quotient + 1 : quotient
    }

    public static func < (lhs: Quantity, rhs: Quantity) -> Bool { lhs.milliValue < rhs.milliValue }
    public static func == (lhs: Quantity, rhs: Quantity) -> Bool { lhs.milliValue == rhs.milliValue }
    public func hash(into hasher: inout Hasher) { hasher.combine(milliValue) }

    /// The canonical text: `500m`, `2`, `512Mi`, `1500k`.
    public var description: String {
        if milliValue % 1000 != 0 { return "\(milliValue)m" }
        let units = milliValue / 1000
        if units == 0 { return "0" }
        switch format {
        case .binarySI:
            var amount = units
            var index = 0
            while index < Quantity.binarySuffixes.count - 1, amount % 1024 == 0 {
                amount /= 1024
                index += 1
            }
            return "\(amount)\(Quantity.binarySuffixes[index])"
        case .decimalSI:
            var amount = units
            var index = 0
            while index < Quantity.decimalSuffixes.count - 1, amount % 1000 == 0 {
                amount /= 1000
                index += 1
            }
            return "\(amount)\(Quantity.decimalSuffixes[index])"
        }
    }

    static let binarySuffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
    static let decimalSuffixes = ["", "k", "M", "G", "T", "P", "E"]
}
