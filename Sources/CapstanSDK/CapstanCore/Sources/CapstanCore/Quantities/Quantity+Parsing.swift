/// Why a text is not a quantity.
public struct QuantityParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The text that was refused.
    public let text: String
    /// What is wrong with it.
    public let reason: String

    public var description: String { "\"\(text)\" is not a quantity: \(reason)" }
}

extension Quantity {
    /// Parses a quantity exactly.
    ///
    /// Grammar: `[+-]digits[.digits](suffix)` where suffix is one of `n u m k M G T P E` (powers of
    /// ten), `Ki Mi Gi Ti Pi Ei` (powers of two), or an exponent `e<int>` / `E<int>`.
    /// - Throws: ``QuantityParseError`` naming the text and what is wrong.
    public init(parsing text: String) throws(QuantityParseError) {
        func fail(_ reason: String) -> QuantityParseError { QuantityParseError(text: text, reason: reason) }
        let scalars = Array(text.utf8)
        guard !scalars.isEmpty else { throw fail("it is empty") }
        var index = 0
        var negative = false
        if scalars[index] == UInt8(ascii: "+") || scalars[index] == UInt8(ascii: "-") {
            negative = scalars[index] == UInt8(ascii: "-")
            index += 1
        }
        // Digits before and after the point, as one integer and a count of fractional digits.
        var mantissa: Int128 = 0
        var fractionDigits = 0
        var sawDigit = false
        var sawPoint = false
        while index < scalars.count {
            let c = scalars[index]
            if c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") {
                sawDigit = true
                guard mantissa < Int128(10).power(30) else { throw fail("too many digits") }
                mantissa = mantissa * 10 + Int128(c - UInt8(ascii: "0"))
                if sawPoint { fractionDigits += 1 }
            } else if c == UInt8(ascii: "."), !sawPoint {
                sawPoint = true
            } else {
                break
            }
            index += 1
        }
        guard sawDigit else { throw fail("expected a number such as 500m, 2 or 512Mi") }
        let suffix = String(decoding: scalars[index...], as: UTF8.self)

        // value = mantissa * 10^(decimalExponent - fractionDigits) * 1024^binaryPower, in milli.
        var decimalExponent = 3 - fractionDigits
        var binaryPower = 0
        var format = Format.decimalSI
        switch suffix {
        case "": break
        case "n": decimalExponent -= 9
        case "u": decimalExponent -= 6
        case "m": decimalExponent -= 3
        case "k": decimalExponent += 3
        case "M": decimalExponent += 6
        case "G": decimalExponent += 9
        case "T": decimalExponent += 12
        case "P": decimalExponent += 15
        case "E": decimalExponent += 18
        case "Ki": binaryPower = 1; format = .binarySI
        case "Mi": binaryPower = 2; format = .binarySI
        case "Gi": binaryPower = 3; format = .binarySI
        case "Ti": binaryPower = 4; format = .binarySI
        case "Pi": binaryPower = 5; format = .binarySI
        case "Ei": binaryPower = 6; format = .binarySI
        default:
            let first = suffix.utf8.first
            guard first == UInt8(ascii: "e") || first == UInt8(ascii: "E"),
                  let exponent = Int(suffix.dropFirst()), abs(exponent) <= 30
            else { throw fail("unknown suffix \"\(suffix)\" (use m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or e<n>)") }
            decimalExponent += exponent
        }

        var value = mantissa
        for _ in 0..<binaryPower {
            guard value <= Int128(Int64.max) * 1000 else { throw fail("it is too large") }
            value *= 1024
        }
        if decimalExponent >= 0 {
            for _ in 0..<decimalExponent {
                guard value <= Int128(Int64.max) else { throw fail("it is too large") }
                value *= 10
            }
        } else {
            // Round up what is finer than a thousandth, as Kubernetes does. `value` is below
            // 10^26 here, so past 30 places the quotient is 0 (found by fuzzing: 10^places
            // overflowed Int128 for a long run of fraction digits such as "0.000…001").
            let places = -decimalExponent
            if places > 30 {
                value = value > 0 ? 1 : 0
            } else {
                let (quotient, remainder) = value.quotientAndRemainder(dividingBy: Int128(10).power(places))
                value = remainder > 0 ? quotient + 1 : quotient
            }
        }
        guard value <= Int128(Int64.max) else { throw fail("it is too large") }
        self.init(milliValue: negative ? -Int64(value) : Int64(value), format: format)
    }
}

extension Int128 {
    fileprivate func power(_ exponent: Int) -> Int128 {
        var result: Int128 = 1
        for _ in 0..<exponent { result *= self }
        return result
    }
}

extension Quantity: Codable {
    /// Decodes `"500m"`, `"512Mi"` or a bare number (`2`, `0.5`).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text: String
        if let string = try? container.decode(String.self) {
            text = string
        } else if let integer = try? container.decode(Int64.self) {
            text = String(integer)
        } else if let double = try? container.decode(Double.self) {
            text = String(double)
        } else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "expected a quantity such as 500m, 2 or 512Mi")
        }
        do {
            try self.init(parsing: text)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.description)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
