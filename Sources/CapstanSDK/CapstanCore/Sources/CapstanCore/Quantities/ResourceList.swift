/// Named resource amounts as written in a manifest: `{cpu: 500m, memory: 512Mi, gpu: 1}`.
///
/// The texts are kept as written so that validation can report *every* malformed amount with its
/// field path, instead of stopping at the first. Use ``vector`` for arithmetic once
/// ``validate(at:)`` found no problem.
public struct ResourceList: Sendable, Hashable, Codable, ExpressibleByDictionaryLiteral {
    /// The amounts by resource name, as written.
    public var texts: [String: String]

    public init(_ texts: [String: String] = [:]) { self.texts = texts }
    public init(dictionaryLiteral elements: (String, String)...) {
        self.texts = Dictionary(elements, uniquingKeysWith: { _, last in last })
    }

    public var isEmpty: Bool { texts.isEmpty }

    /// The parsed quantity of one resource, or nil when absent or malformed.
    public subscript(name: String) -> Quantity? {
        texts[name].flatMap { try? Quantity(parsing: $0) }
    }

    /// Every problem with these amounts: malformed texts, negative amounts, bad names.
    public func validate(at path: String) -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        for name in texts.keys.sorted() {
            let text = texts[name]!
            let field = "\(path).\(name)"
            if !ResourceName.isValid(name) {
                problems.append(ValidationProblem(path: field, message: "\"\(name)\" is not a resource name (lowercase letters, digits, '-', '.', '/')"))
                continue
            }
            do {
                let quantity = try Quantity(parsing: text)
                if quantity.milliValue < 0 {
                    problems.append(ValidationProblem(path: field, message: "\"\(text)\" is negative; resource amounts must be zero or more"))
                } else if name != ResourceName.cpu, quantity.milliValue % 1000 != 0 {
                    problems.append(ValidationProblem(path: field, message: "\"\(text)\" is fractional; only cpu takes fractions (use whole \(name == ResourceName.memory ? "bytes" : "units"))"))
                } else if let maximum = Self.maximum(of: name), quantity > maximum {
                    problems.append(ValidationProblem(path: field, message: "\"\(text)\" is more than \(maximum), the most Capstan accepts for \(name)"))
                }
            } catch {
                problems.append(ValidationProblem(path: field, message: "\"\(text)\" is not a quantity (\(error.reason))"))
            }
        }
        return problems
    }

    /// The largest amount of a resource one list may hold (``FieldLimits``).
    static func maximum(of name: String) -> Quantity? {
        switch name {
        case ResourceName.cpu: return Quantity(milliValue: FieldLimits.maxCPUMilli)
        case ResourceName.memory: return Quantity(milliValue: FieldLimits.maxMemoryBytes * 1000, format: .binarySI)
        default: return Quantity(milliValue: FieldLimits.maxExtendedUnits * 1000)
        }
    }

    /// The amounts as numbers: cpu in millicores, memory in bytes, others in whole units.
    /// Malformed entries count as zero; call ``validate(at:)`` first.
    public var vector: ResourceVector {
        var vector = ResourceVector()
        for (name, text) in texts {
            guard let quantity = try? Quantity(parsing: text) else { continue }
            switch name {
            case ResourceName.cpu: vector.cpuMilli = quantity.milliValue
            case ResourceName.memory: vector.memoryBytes = quantity.value
            default: vector.extended[name] = quantity.value
            }
        }
        return vector
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: AnyCodingKey.self)
        var texts: [String: String] = [:]
        for key in container.allKeys {
            if let text = try? container.decode(String.self, forKey: key) {
                texts[key.stringValue] = text
            } else if let integer = try? container.decode(Int64.self, forKey: key) {
                texts[key.stringValue] = String(integer)
            } else if let double = try? container.decode(Double.self, forKey: key) {
                texts[key.stringValue] = String(double)
            } else {
                throw DecodingError.typeMismatch(String.self, DecodingError.Context(
                    codingPath: container.codingPath + [key],
                    debugDescription: "expected a quantity such as 500m, 2 or 512Mi"))
            }
        }
        self.texts = texts
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: AnyCodingKey.self)
        for (name, text) in texts { try container.encode(text, forKey: AnyCodingKey(name)) }
    }
}

/// Well-known resource names.
public enum ResourceName {
    /// CPU, in millicores.
    public static let cpu = "cpu"
    /// Memory, in bytes.
    public static let memory = "memory"
    /// Whole GPUs.
    public static let gpu = "gpu"
    /// A share of one GPU in thousandths (1000 = a whole GPU).
    public static let gpuMilli = "gpu-milli"

    /// Lowercase letters, digits, `-`, `.`, `/`; starts with a letter.
    public static func isValid(_ name: String) -> Bool {
        guard let first = name.utf8.first, first >= UInt8(ascii: "a"), first <= UInt8(ascii: "z") else { return false }
        return name.utf8.allSatisfy { c in
            (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
                || c == UInt8(ascii: "-") || c == UInt8(ascii: ".") || c == UInt8(ascii: "/")
        }
    }
}

/// A coding key for any string, used to read maps and to find unknown keys.
public struct AnyCodingKey: CodingKey, Hashable, Sendable {
    public var stringValue: String
    public var intValue: Int?
    public init(_ string: String) { self.stringValue = string }
    public init?(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { self.stringValue = String(intValue); self.intValue = intValue }
}
