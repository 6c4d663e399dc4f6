import Synchronization
/// One thing wrong with a manifest or a config, with the path of the field it is about.
/// It is also an `Error`, for code that reports one problem by throwing it.
public struct ValidationProblem: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    /// The field, dotted from the document root: `spec.template.resources.cpu`, `plugins[2].sha256`.
    public var path: String
    /// What is wrong and, where it helps, what to write instead.
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// A value that can list every problem it has.
public protocol Validatable {
    /// Every problem found, each with its field path; empty when valid.
    func validate() -> [ValidationProblem]
}

/// Thrown when a document has one or more problems; lists them all.
public struct ValidationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What the document is, for the first line of the message (a file name, `Workload "web"`).
    public var subject: String
    public var problems: [ValidationProblem]

    public init(subject: String, problems: [ValidationProblem]) {
        self.subject = subject
        self.problems = problems
    }

    public var description: String {
        (["\(subject) is invalid:"] + problems.map { "  \($0)" }).joined(separator: "\n")
    }
}

extension DecodingError {
    /// The field path and message of a decoding failure, in the same form as validation problems.
    public var problem: ValidationProblem {
        func path(_ codingPath: [any CodingKey]) -> String {
            var text = ""
            for key in codingPath {
                if let index = key.intValue { text += "[\(index)]" } else { text += text.isEmpty ? key.stringValue : ".\(key.stringValue)" }
            }
            return text
        }
        switch self {
        case .typeMismatch(let type, let context):
            // Decoders' own text ("Expected to decode Int but found a string") adds nothing to the type.
            let detail = context.debugDescription.hasPrefix("Expected to decode") ? "" : "; \(context.debugDescription)"
            return ValidationProblem(path: path(context.codingPath), message: "expected \(Self.typeName(type))\(detail)")
        case .valueNotFound(let type, let context):
            return ValidationProblem(path: path(context.codingPath), message: "expected \(Self.typeName(type)), found nothing")
        case .keyNotFound(let key, let context):
            return ValidationProblem(path: path(context.codingPath + [key]), message: "is required")
        case .dataCorrupted(let context):
            return ValidationProblem(path: path(context.codingPath), message: context.debugDescription)
        @unknown default:
            return ValidationProblem(path: "", message: "\(self)")
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is Int64.Type, is Int32.Type, is UInt64.Type, is UInt32.Type, is UInt16.Type: return "an integer"
        case is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        default:
            let name = String(describing: type)
            if name.hasPrefix("Array") || name == "Sequence" { return "a list" }
            if name.hasPrefix("Dictionary") || name == "Mapping" || name.hasPrefix("KeyedDecodingContainer") { return "a map" }
            return name
        }
    }
}

extension CodingUserInfoKey {
    /// Set to `true` in a decoder's `userInfo` to skip the unknown-key checks: for documents the
    /// store wrote itself, which were checked when they came in.
    public static let capstanTrustedDocument = CodingUserInfoKey(rawValue: "capstan.trustedDocument")!
    /// An ``UnknownKeys`` collector: with one in `userInfo`, unknown keys are collected — every
    /// one of them — instead of thrown at the first (SDK 1.3).
    public static let capstanUnknownKeys = CodingUserInfoKey(rawValue: "capstan.unknownKeys")!
}

/// Collects every unknown key a decode meets (see ``CodingUserInfoKey/capstanUnknownKeys``), so
/// a manifest with three typos gets three problems at once.
public final class UnknownKeys: Sendable {
    private let found = Mutex<[ValidationProblem]>([])

    public init() {}

    public var problems: [ValidationProblem] { found.withLock { $0 } }

    func add(_ problem: ValidationProblem) { found.withLock { $0.append(problem) } }
}

extension KeyedDecodingContainer {
    /// Throws a decoding error naming the first key not in `known`: strict documents refuse typos.
    /// Skipped when the decoder's `userInfo[.capstanTrustedDocument]` is `true`.
    public func rejectUnknownKeys(_ known: some Sequence<String>, in decoder: any Decoder) throws {
        if decoder.userInfo[.capstanTrustedDocument] as? Bool == true { return }
        try rejectUnknownKeysChecked(known, in: decoder)
    }

    /// The check itself, for a document known not to be trusted.
    func rejectUnknownKeysChecked(_ known: some Sequence<String>, in decoder: any Decoder) throws {
        let all = try decoder.container(keyedBy: AnyCodingKey.self)
        // A linear look over a dozen names costs less than hashing them into a set; sorting is
        // only for what is reported.
        let unknown = all.allKeys.filter { key in !known.contains(key.stringValue) }
        if unknown.isEmpty { return }
        let expected = Set(known).sorted().joined(separator: ", ")
        let collector = decoder.userInfo[.capstanUnknownKeys] as? UnknownKeys
        for key in unknown.sorted(by: { $0.stringValue < $1.stringValue }) {
            if let collector {
                let path = DecodingError.dataCorrupted(DecodingError.Context(codingPath: codingPath + [key], debugDescription: "")).problem.path
                collector.add(ValidationProblem(path: path, message: "unknown key; expected one of: \(expected)"))
                continue
            }
            throw DecodingError.dataCorrupted(DecodingError.Context(
                codingPath: codingPath + [key],
                debugDescription: "unknown key; expected one of: \(expected)"))
        }
    }
}

extension KeyedDecodingContainer where Key: CaseIterable & RawRepresentable, Key.RawValue == String {
    /// ``rejectUnknownKeys(_:in:)`` with the container's own keys as the known ones, listed only
    /// when they are needed: a trusted document (every object a client reads from the server)
    /// builds nothing.
    func rejectUnknownKeys(in decoder: any Decoder) throws {
        if decoder.userInfo[.capstanTrustedDocument] as? Bool == true { return }
        try rejectUnknownKeysChecked(Key.allCases.map(\.rawValue), in: decoder)
    }
}
