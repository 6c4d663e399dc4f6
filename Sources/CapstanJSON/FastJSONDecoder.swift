import Foundation

/// Decodes what Foundation's `JSONDecoder` decodes, to the same values, in a fraction of its
/// time — and where it is not sure it would agree, lets `JSONDecoder` decide.
///
/// Why: every watch event, API answer, request body and stored object is a JSON decode, and
/// Foundation's decoder was half of a watching client's CPU and a tenth of the server's. It
/// builds a dictionary with a `String` per key for every object it decodes and tracks a coding
/// path for every value; this one reads a flat token array once and finds a key by comparing
/// bytes: first the key found last (a type may ask for one key twice), then from the one after
/// it (synthesized `Decodable` types and dictionaries ask for keys in the order they appear,
/// so most lookups compare one key).
///
/// What it leaves to Foundation: malformed JSON, keys outside ASCII (Swift compares strings by
/// canonical equivalence, not bytes), a key twice in one object, a number with a fraction or an
/// exponent read as an integer, an integer that does not fit, a number too large or too small
/// for a `Double`, `Float`, `Int128`, the types Foundation treats specially (`Date`, `Data`,
/// `URL`, `Decimal`), super-decoders, key lookups past a budget linear in the document's size
/// — and every decode that throws. When one is met, the document is decoded again by
/// `JSONDecoder` with the same `userInfo`, so the value, or the error and its message, are
/// exactly Foundation's. The fast path throws, on its own
/// account, only where Foundation throws too (a value of another JSON type, a missing key, a
/// null), so a type that catches an error and tries another reading reads the same way.
///
/// Decoding must have no side effects beyond the value: a type that records what it sees in
/// `userInfo` would record it twice when Foundation takes over. `codingPath` is always empty
/// (it only names fields in errors, and errors are Foundation's), and a type must not keep the
/// decoder or a container after its `init(from:)` returns (they point into the document).
public struct FastJSONDecoder: Sendable {
    /// Handed to the types decoded, as `JSONDecoder.userInfo` is.
    public var userInfo: [CodingUserInfoKey: any Sendable] = [:] {
        didSet { converted = ConvertedUserInfo(values: userInfo) }
    }
    /// `userInfo` as `Decoder.userInfo` hands it out, converted once, not on every decode.
    private var converted = ConvertedUserInfo(values: [:])
    private var decoderUserInfo: [CodingUserInfoKey: Any] { converted.values }

    /// Sendable: each value was a `Sendable` one in ``userInfo``, only its static type is `Any`.
    private struct ConvertedUserInfo: @unchecked Sendable {
        let values: [CodingUserInfoKey: Any]
    }

    public init() {}

    /// The value `JSONDecoder().decode(type, from: data)` gives, or its error.
    public func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        if let value = data.withUnsafeBytes({ FastJSONDecoder.decodeWithoutFallback(type, from: $0, userInfo: decoderUserInfo) }) {
            return value
        }
        return try foundation().decode(type, from: data)
    }

    /// ``decode(_:from:)`` of bytes that stay valid for the call (a network buffer, say),
    /// without copying them first.
    public func decode<T: Decodable>(_ type: T.Type, fromBytes bytes: UnsafeRawBufferPointer) throws -> T {
        if let value = FastJSONDecoder.decodeWithoutFallback(type, from: bytes, userInfo: decoderUserInfo) { return value }
        return try foundation().decode(type, from: Data(bytes))
    }

    /// The value decoded without Foundation, or nil where Foundation must decide: malformed
    /// JSON, a key twice in one object, a key outside ASCII, any error, and the rest listed
    /// above. A caller with checks of its own for such documents (a clear "key twice" error)
    /// runs them only when this is nil.
    public func decodeOnFastPath<T: Decodable>(_ type: T.Type, from data: Data) -> T? {
        data.withUnsafeBytes { FastJSONDecoder.decodeWithoutFallback(type, from: $0, userInfo: decoderUserInfo) }
    }

    private func foundation() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.userInfo = userInfo
        return decoder
    }

    /// The value decoded without Foundation, or nil where Foundation must decide (for tests:
    /// that the fast path is the one taken).
    static func decodeWithoutFallback<T: Decodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer, userInfo: [CodingUserInfoKey: Any]) -> T? {
        guard bytes.count > 0, bytes.count < Int(Int32.max), let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
        var parser = Parser(base: base, count: bytes.count)
        guard (try? parser.parseDocument()) != nil else {
            return nil
        }
        if parser.sawNonASCII, String(validating: UnsafeBufferPointer(start: base, count: bytes.count), as: UTF8.self) == nil { return nil }
        return parser.tokens.withUnsafeMutableBufferPointer { tokens in
            parser.keys.withUnsafeBufferPointer { keys in
                let reader = Reader(bytes: base, keys: keys.baseAddress ?? base, tokens: tokens, userInfo: userInfo)
                do {
                    let value = try reader.decode(type, at: 0)
                    return reader.mustFallBack ? nil : value
                } catch {
                    return nil
                }
            }
        }
    }
}

// MARK: - Tokens

private enum Kind: UInt8 {
    case object, array, string, escapedString, integer, number, `true`, `false`, null
    /// A key with escapes (`"capstan.dev\/workload"`, as Foundation writes a slash): its
    /// unescaped bytes are in the parser's `keys`, from `start`.
    case escapedKey
}

/// One JSON value. Containers are followed by their members (an object's as key, value, key,
/// value …); `end` is the index of the token after the whole value, so a member is skipped in
/// one step.
private struct Token {
    var kind: Kind
    /// First byte: a string's after its opening quote, a number's first character. For an
    /// object, the member its next key lookup compares first (the one after the last found).
    var start: Int32
    /// A string's or a number's length in bytes; a container's count of members.
    var length: Int32
    var end: Int32
    /// For an object, the member its last key lookup found (0: none yet), compared first: a
    /// type may ask for one key twice (`try?` one reading, then another).
    var previous: Int32 = 0
}

/// Thrown inside the parser and the reader when Foundation must decide.
private struct Fallback: Error {}

private struct Parser {
    let base: UnsafePointer<UInt8>
    let count: Int
    var index = 0
    var tokens: ContiguousArray<Token> = []
    /// The unescaped bytes of keys written with escapes.
    var keys: [UInt8] = []
    var sawNonASCII = false
    /// Deeper documents are Foundation's to accept or refuse.
    static let maximumDepth = 512

    init(base: UnsafePointer<UInt8>, count: Int) {
        self.base = base
        self.count = count
        tokens.reserveCapacity(count / 10 + 4)
    }

    mutating func parseDocument() throws(Fallback) {
        try parseValue(depth: 0)
        skipWhitespace()
        if index != count { throw Fallback() }
    }

    private mutating func skipWhitespace() {
        while index < count {
            switch base[index] {
            case 0x20, 0x0A, 0x0D, 0x09: index += 1
            default: return
            }
        }
    }

    private mutating func parseValue(depth: Int) throws(Fallback) {
        skipWhitespace()
        guard index < count, depth < Parser.maximumDepth else { throw Fallback() }
        switch base[index] {
        case UInt8(ascii: "{"): try parseObject(depth: depth)
        case UInt8(ascii: "["): try parseArray(depth: depth)
        case UInt8(ascii: "\""): try parseString()
        case UInt8(ascii: "t"): try literal("true", .true)
        case UInt8(ascii: "f"): try literal("false", .false)
        case UInt8(ascii: "n"): try literal("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try parseNumber()
        default: throw Fallback()
        }
    }

    private mutating func literal(_ word: StaticString, _ kind: Kind) throws(Fallback) {
        let length = word.utf8CodeUnitCount
        guard count - index >= length, memcmp(base + index, word.utf8Start, length) == 0 else { throw Fallback() }
        tokens.append(Token(kind: kind, start: Int32(index), length: Int32(length), end: Int32(tokens.count + 1)))
        index += length
    }

    /// Whether the last string read had a byte outside ASCII (raw, not escaped).
    private var lastStringNonASCII = false

    private mutating func parseString() throws(Fallback) {
        index += 1
        let start = index
        var escaped = false
        lastStringNonASCII = false
        while true {
            guard index < count else { throw Fallback() }
            let byte = base[index]
            if byte == UInt8(ascii: "\"") { break }
            if byte < 0x20 { throw Fallback() }
            if byte >= 0x80 { sawNonASCII = true; lastStringNonASCII = true }
            if byte == UInt8(ascii: "\\") {
                escaped = true
                index += 1
                guard index < count else { throw Fallback() }
                switch base[index] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    break
                case UInt8(ascii: "u"):
                    guard count - index > 4 else { throw Fallback() }
                    for offset in 1...4 where Parser.hexValue(base[index + offset]) == nil { throw Fallback() }
                    index += 4
                default:
                    throw Fallback()
                }
            }
            index += 1
        }
        tokens.append(Token(kind: escaped ? .escapedString : .string, start: Int32(start), length: Int32(index - start), end: Int32(tokens.count + 1)))
        index += 1
    }

    static func hexValue(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }

    /// JSON's grammar: `-? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?`.
    private mutating func parseNumber() throws(Fallback) {
        let start = index
        var integral = true
        if base[index] == UInt8(ascii: "-") { index += 1 }
        guard index < count else { throw Fallback() }
        if base[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            guard digits() > 0 else { throw Fallback() }
        }
        if index < count, base[index] == UInt8(ascii: ".") {
            integral = false
            index += 1
            guard digits() > 0 else { throw Fallback() }
        }
        if index < count, base[index] == UInt8(ascii: "e") || base[index] == UInt8(ascii: "E") {
            integral = false
            index += 1
            if index < count, base[index] == UInt8(ascii: "+") || base[index] == UInt8(ascii: "-") { index += 1 }
            guard digits() > 0 else { throw Fallback() }
        }
        tokens.append(Token(kind: integral ? .integer : .number, start: Int32(start), length: Int32(index - start), end: Int32(tokens.count + 1)))
    }

    private mutating func digits() -> Int {
        let start = index
        while index < count, base[index] >= UInt8(ascii: "0"), base[index] <= UInt8(ascii: "9") { index += 1 }
        return index - start
    }

    private mutating func parseArray(depth: Int) throws(Fallback) {
        let at = tokens.count
        tokens.append(Token(kind: .array, start: Int32(index), length: 0, end: 0))
        index += 1
        skipWhitespace()
        var members: Int32 = 0
        if index < count, base[index] == UInt8(ascii: "]") {
            index += 1
        } else {
            while true {
                try parseValue(depth: depth + 1)
                members += 1
                skipWhitespace()
                guard index < count else { throw Fallback() }
                if base[index] == UInt8(ascii: ",") { index += 1; continue }
                if base[index] == UInt8(ascii: "]") { index += 1; break }
                throw Fallback()
            }
        }
        tokens[at].length = members
        tokens[at].end = Int32(tokens.count)
    }

    private mutating func parseObject(depth: Int) throws(Fallback) {
        let at = tokens.count
        tokens.append(Token(kind: .object, start: Int32(index), length: 0, end: 0))
        index += 1
        skipWhitespace()
        var members: Int32 = 0
        if index < count, base[index] == UInt8(ascii: "}") {
            index += 1
        } else {
            while true {
                skipWhitespace()
                guard index < count, base[index] == UInt8(ascii: "\"") else { throw Fallback() }
                try parseString()
                // Keys are compared as bytes: an escaped one is compared unescaped. Swift
                // compares strings by canonical equivalence ("é" written as one scalar or as
                // two is one key; KELVIN SIGN is "K"): a key outside ASCII is Foundation's.
                if lastStringNonASCII { throw Fallback() }
                if tokens[tokens.count - 1].kind == .escapedString { try unescapeKey(tokens.count - 1) }
                skipWhitespace()
                guard index < count, base[index] == UInt8(ascii: ":") else { throw Fallback() }
                index += 1
                try parseValue(depth: depth + 1)
                members += 1
                skipWhitespace()
                guard index < count else { throw Fallback() }
                if base[index] == UInt8(ascii: ",") { index += 1; continue }
                if base[index] == UInt8(ascii: "}") { index += 1; break }
                throw Fallback()
            }
        }
        tokens[at].length = members
        tokens[at].end = Int32(tokens.count)
        // An object's start is where its key lookups begin: its first member.
        tokens[at].start = Int32(at + 1)
        if members > 1 { try refuseDuplicateKeys(object: at) }
    }

    private mutating func unescapeKey(_ at: Int) throws(Fallback) {
        let token = tokens[at]
        guard let bytes = Reader.unescape(UnsafeBufferPointer(start: base + Int(token.start), count: Int(token.length))), bytes.allSatisfy({ $0 < 0x80 }) else { throw Fallback() }
        tokens[at] = Token(kind: .escapedKey, start: Int32(keys.count), length: Int32(bytes.count), end: token.end)
        keys.append(contentsOf: bytes)
    }

    /// Where a key's bytes are, given where the unescaped keys are.
    func keyBytes(_ token: Token, keys: UnsafePointer<UInt8>) -> UnsafePointer<UInt8> {
        (token.kind == .escapedKey ? keys : base) + Int(token.start)
    }

    /// A key twice in one object is Foundation's to resolve.
    private func refuseDuplicateKeys(object: Int) throws(Fallback) {
        try self.keys.withUnsafeBufferPointer { (unescaped) throws(Fallback) in
            try refuseDuplicateKeys(object: object, unescaped: unescaped.baseAddress ?? base)
        }
    }

    private func refuseDuplicateKeys(object: Int, unescaped: UnsafePointer<UInt8>) throws(Fallback) {
        var keys: [Int] = []
        keys.reserveCapacity(Int(tokens[object].length))
        var member = object + 1
        for _ in 0..<tokens[object].length {
            keys.append(member)
            member = Int(tokens[member + 1].end)
        }
        if keys.count <= 16 {
            for i in keys.indices {
                for j in keys.indices where j > i && sameBytes(keys[i], keys[j], unescaped) { throw Fallback() }
            }
            return
        }
        var seen = Set<String>(minimumCapacity: keys.count)
        for key in keys {
            let token = tokens[key]
            let text = String(decoding: UnsafeBufferPointer(start: keyBytes(token, keys: unescaped), count: Int(token.length)), as: UTF8.self)
            if !seen.insert(text).inserted { throw Fallback() }
        }
    }

    private func sameBytes(_ a: Int, _ b: Int, _ unescaped: UnsafePointer<UInt8>) -> Bool {
        let x = tokens[a], y = tokens[b]
        return x.length == y.length && memcmp(keyBytes(x, keys: unescaped), keyBytes(y, keys: unescaped), Int(x.length)) == 0
    }
}

// MARK: - Reading values

private final class Reader {
    let bytes: UnsafePointer<UInt8>
    /// The unescaped bytes of keys written with escapes (``Kind/escapedKey``).
    let keys: UnsafePointer<UInt8>
    /// Mutable only for an object's ``Token/start``, where its key lookups resume.
    let tokens: UnsafeMutableBufferPointer<Token>
    let userInfo: [CodingUserInfoKey: Any]
    /// Set where Foundation must decide even if the decode goes on to succeed (a type may
    /// catch the error thrown with it).
    @exclusivity(unchecked) var mustFallBack = false
    /// Members compared in key lookups so far, and how many the document may cost before
    /// Foundation's hashed lookups take over: linear in its size, whatever order a type asks
    /// for keys in (an object of 300,000 members looked up backwards would be quadratic).
    @exclusivity(unchecked) var comparisons = 0
    let comparisonBudget: Int

    init(bytes: UnsafePointer<UInt8>, keys: UnsafePointer<UInt8>, tokens: UnsafeMutableBufferPointer<Token>, userInfo: [CodingUserInfoKey: Any]) {
        self.bytes = bytes
        self.keys = keys
        self.comparisonBudget = 32 * tokens.count + 4_096
        self.tokens = tokens
        self.userInfo = userInfo
    }

    func fallBack() -> Fallback {
        mustFallBack = true
        return Fallback()
    }

    func mismatch(_ type: Any.Type, at index: Int) -> DecodingError {
        if tokens[index].kind == .null {
            return DecodingError.valueNotFound(type, DecodingError.Context(codingPath: [], debugDescription: "null"))
        }
        return DecodingError.typeMismatch(type, DecodingError.Context(codingPath: [], debugDescription: "another JSON type"))
    }

    func isNull(_ index: Int) -> Bool { tokens[index].kind == .null }

    func keyBytes(_ token: Token) -> UnsafePointer<UInt8> {
        (token.kind == .escapedKey ? keys : bytes) + Int(token.start)
    }

    func bool(_ index: Int) throws -> Bool {
        switch tokens[index].kind {
        case .true: return true
        case .false: return false
        default: throw mismatch(Bool.self, at: index)
        }
    }

    func string(_ index: Int) throws -> String {
        let token = tokens[index]
        let raw = UnsafeBufferPointer(start: bytes + Int(token.start), count: Int(token.length))
        switch token.kind {
        case .string:
            return String(decoding: raw, as: UTF8.self)  // the whole document was checked to be UTF-8
        case .escapedString:
            guard let unescaped = Reader.unescape(raw), let text = String(validating: unescaped, as: UTF8.self) else { throw fallBack() }
            return text
        default:
            throw mismatch(String.self, at: index)
        }
    }

    /// The bytes between the quotes with their escapes resolved; nil for a lone surrogate.
    static func unescape(_ raw: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var i = 0
        func hex4(_ at: Int) -> UInt32 {
            var value: UInt32 = 0
            for offset in 0..<4 { value = value << 4 | (Parser.hexValue(raw[at + offset]) ?? 0) }
            return value
        }
        while i < raw.count {
            let byte = raw[i]
            guard byte == UInt8(ascii: "\\") else { out.append(byte); i += 1; continue }
            let escape = raw[i + 1]
            i += 2
            switch escape {
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = hex4(i)
                i += 4
                if (0xD800...0xDBFF).contains(scalar) {
                    guard i + 6 <= raw.count, raw[i] == UInt8(ascii: "\\"), raw[i + 1] == UInt8(ascii: "u") else { return nil }
                    let low = hex4(i + 2)
                    guard (0xDC00...0xDFFF).contains(low) else { return nil }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    return nil
                }
                guard let unicode = Unicode.Scalar(scalar) else { return nil }
                out.append(contentsOf: UTF8.encode(unicode)!)
            default: out.append(escape)  // " \ /
            }
        }
        return out
    }

    func integer<T: FixedWidthInteger>(_ index: Int, as type: T.Type) throws -> T {
        let token = tokens[index]
        guard token.kind == .integer else {
            if token.kind == .number { throw fallBack() }
            throw mismatch(type, at: index)
        }
        var at = bytes + Int(token.start)
        let end = at + Int(token.length)
        let negative = at.pointee == UInt8(ascii: "-")
        if negative {
            guard T.isSigned else { throw fallBack() }
            at += 1
        }
        var value: T = 0
        while at < end {
            let digit = T(truncatingIfNeeded: at.pointee &- UInt8(ascii: "0"))
            let (shifted, overflowA) = value.multipliedReportingOverflow(by: 10)
            let (next, overflowB) = negative ? shifted.subtractingReportingOverflow(digit) : shifted.addingReportingOverflow(digit)
            if overflowA || overflowB { throw fallBack() }
            value = next
            at += 1
        }
        return value
    }

    func double(_ index: Int) throws -> Double {
        let token = tokens[index]
        guard token.kind == .integer || token.kind == .number else { throw mismatch(Double.self, at: index) }
        let text = String(decoding: UnsafeBufferPointer(start: bytes + Int(token.start), count: Int(token.length)), as: UTF8.self)
        guard let value = Double(text), value.isFinite else { throw fallBack() }
        // A literal too small for a Double parses as 0, which Foundation refuses: only a
        // literal whose digits are all zero is 0 here.
        if value == 0, text.utf8.prefix(while: { $0 != UInt8(ascii: "e") && $0 != UInt8(ascii: "E") }).contains(where: { $0 >= UInt8(ascii: "1") && $0 <= UInt8(ascii: "9") }) {
            throw fallBack()
        }
        return value
    }

    func decode<T: Decodable>(_ type: T.Type, at index: Int) throws -> T {
        // Foundation decodes these its own way (base64, strings, strategies).
        if type == Data.self || type == Date.self || type == URL.self || type == Decimal.self || type == Float.self || type == Int128.self || type == UInt128.self {
            throw fallBack()
        }
        // Labels and annotations: read straight from the tokens, without a keyed container
        // (whose generic metadata the runtime looks up for every one). Keys are ASCII and
        // unique here (the parser leaves anything else to Foundation), so this is the
        // dictionary Foundation makes; a value that is not a string throws, and Foundation
        // reports it.
        if type == [String: String].self {
            return unsafeBitCast(try stringDictionary(index), to: T.self)
        }
        return try T(from: ValueDecoder(reader: self, index: index))
    }

    func stringDictionary(_ index: Int) throws -> [String: String] {
        let token = tokens[index]
        guard token.kind == .object else { throw mismatch([String: String].self, at: index) }
        var dictionary: [String: String] = [:]
        if token.length == 0 { return dictionary }
        dictionary.reserveCapacity(Int(token.length))
        var member = index + 1
        for _ in 0..<token.length {
            let key = tokens[member]
            let name = String(decoding: UnsafeBufferPointer(start: keyBytes(key), count: Int(key.length)), as: UTF8.self)
            dictionary[name] = try string(member + 1)
            member = Int(tokens[member + 1].end)
        }
        return dictionary
    }

    func keyed<Key: CodingKey>(_ index: Int, by: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard tokens[index].kind == .object else { throw mismatch([String: Any].self, at: index) }
        return KeyedDecodingContainer(Keyed<Key>(reader: self, object: index))
    }

    func unkeyed(_ index: Int) throws -> Unkeyed {
        guard tokens[index].kind == .array else { throw mismatch([Any].self, at: index) }
        return Unkeyed(reader: self, array: index)
    }
}

private struct ValueDecoder: Decoder {
    let reader: Reader
    let index: Int

    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { reader.userInfo }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        try reader.keyed(index, by: type)
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer { try reader.unkeyed(index) }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { Single(reader: reader, index: index) }
}

private struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let reader: Reader
    let object: Int

    var codingPath: [any CodingKey] { [] }

    var allKeys: [Key] {
        let tokens = reader.tokens
        var keys: [Key] = []
        keys.reserveCapacity(Int(tokens[object].length))
        var member = object + 1
        for _ in 0..<tokens[object].length {
            let token = tokens[member]
            let name = String(decoding: UnsafeBufferPointer(start: reader.keyBytes(token), count: Int(token.length)), as: UTF8.self)
            if let key = Key(stringValue: name) { keys.append(key) }
            member = Int(tokens[member + 1].end)
        }
        return keys
    }

    /// The index of `key`'s value, or nil.
    private func find(_ key: Key) -> Int? {
        let tokens = reader.tokens
        let members = tokens[object].length
        if members == 0 { return nil }
        let end = Int(tokens[object].end)
        let reader = self.reader, object = self.object
        if reader.mustFallBack { return nil }  // Foundation decides: stop working
        var name = key.stringValue
        return name.withUTF8 { wanted -> Int? in
            func matches(_ member: Int) -> Bool {
                let token = tokens[member]
                return Int(token.length) == wanted.count && (wanted.count == 0 || memcmp(reader.keyBytes(token), wanted.baseAddress!, wanted.count) == 0)
            }
            let previous = Int(tokens[object].previous)
            if previous != 0, matches(previous) { return previous + 1 }
            // Then from the member after the last one found (``Token/start``), round the object.
            var member = Int(tokens[object].start)
            if reader.comparisons > reader.comparisonBudget {
                reader.mustFallBack = true
                return nil
            }
            for _ in 0..<members {
                reader.comparisons += 1
                let next = Int(tokens[member + 1].end)
                if matches(member) {
                    reader.tokens[object].start = Int32(next == end ? object + 1 : next)
                    reader.tokens[object].previous = Int32(member)
                    return member + 1
                }
                member = next == end ? object + 1 : next
            }
            // Not here as bytes; a key outside ASCII may still be here as Swift compares it.
            if wanted.contains(where: { $0 >= 0x80 }) { reader.mustFallBack = true }
            return nil
        }
    }

    private func value(_ key: Key) throws -> Int {
        guard let index = find(key) else {
            throw DecodingError.keyNotFound(key, DecodingError.Context(codingPath: [], debugDescription: "no value"))
        }
        return index
    }

    /// The value's index when present and not null.
    private func present(_ key: Key) -> Int? {
        guard let index = find(key), !reader.isNull(index) else { return nil }
        return index
    }

    func contains(_ key: Key) -> Bool { find(key) != nil }
    func decodeNil(forKey key: Key) throws -> Bool { reader.isNull(try value(key)) }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try reader.bool(try value(key)) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try reader.string(try value(key)) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try reader.double(try value(key)) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { throw reader.fallBack() }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try reader.integer(try value(key), as: type) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try reader.integer(try value(key), as: type) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try reader.integer(try value(key), as: type) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try reader.integer(try value(key), as: type) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try reader.integer(try value(key), as: type) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try reader.integer(try value(key), as: type) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try reader.integer(try value(key), as: type) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try reader.integer(try value(key), as: type) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try reader.integer(try value(key), as: type) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try reader.integer(try value(key), as: type) }
    func decode(_ type: Int128.Type, forKey key: Key) throws -> Int128 { throw reader.fallBack() }
    func decode(_ type: UInt128.Type, forKey key: Key) throws -> UInt128 { throw reader.fallBack() }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try reader.decode(type, at: try value(key)) }

    func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? { try present(key).map(reader.bool) }
    func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? { try present(key).map(reader.string) }
    func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? { try present(key).map(reader.double) }
    func decodeIfPresent(_ type: Float.Type, forKey key: Key) throws -> Float? { throw reader.fallBack() }
    func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? { try present(key).map { try reader.integer($0, as: type) } }
    func decodeIfPresent(_ type: Int8.Type, forKey key: Key) throws -> Int8? { try present(key).map { try reader.integer($0, as: type) } }
    func decodeIfPresent(_ type: Int16.Type, forKey key: Key) throws -> Int16? { try present(key).map { try reader.integer($0, as: type) } }
    func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? { try present(key).map { try reader.integer($0, as: type) } }
    func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? { try present(key).map { try reader.integer($0, as: type) } }
    func decodeIfPresent(_ type: UInt.Type, forKey key: Key) throws -> UInt? { try present(key).map { try reader.integer($0, as: type) } }
    func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) throws -> UInt8? { try present(key).map { try reader.integer($0, as: type) } }
    func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) throws -> UInt16? { try present(key).map { try reader.integer($0, as: type) } }
    func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) throws -> UInt32? { try present(key).map { try reader.integer($0, as: type) } }
    func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) throws -> UInt64? { try present(key).map { try reader.integer($0, as: type) } }
    func decodeIfPresent(_ type: Int128.Type, forKey key: Key) throws -> Int128? { throw reader.fallBack() }
    func decodeIfPresent(_ type: UInt128.Type, forKey key: Key) throws -> UInt128? { throw reader.fallBack() }
    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? { try present(key).map { try reader.decode(type, at: $0) } }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try reader.keyed(try value(key), by: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer { try reader.unkeyed(try value(key)) }
    func superDecoder() throws -> any Decoder { throw reader.fallBack() }
    func superDecoder(forKey key: Key) throws -> any Decoder { throw reader.fallBack() }
}

private struct Unkeyed: UnkeyedDecodingContainer {
    let reader: Reader
    let total: Int
    /// The token of the element at `currentIndex`.
    private var next: Int
    private(set) var currentIndex = 0

    init(reader: Reader, array: Int) {
        self.reader = reader
        self.total = Int(reader.tokens[array].length)
        self.next = array + 1
    }

    var codingPath: [any CodingKey] { [] }
    var count: Int? { total }
    var isAtEnd: Bool { currentIndex >= total }

    /// The current element's index; the container moves on only once it is decoded.
    private func current(_ type: Any.Type) throws -> Int {
        if isAtEnd {
            throw DecodingError.valueNotFound(type, DecodingError.Context(codingPath: [], debugDescription: "the array has ended"))
        }
        return next
    }

    private mutating func advance() {
        next = Int(reader.tokens[next].end)
        currentIndex += 1
    }

    private mutating func take<T>(_ value: T) -> T {
        advance()
        return value
    }

    mutating func decodeNil() throws -> Bool {
        guard reader.isNull(try current(Never.self)) else { return false }
        advance()
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { take(try reader.bool(try current(type))) }
    mutating func decode(_ type: String.Type) throws -> String { take(try reader.string(try current(type))) }
    mutating func decode(_ type: Double.Type) throws -> Double { take(try reader.double(try current(type))) }
    mutating func decode(_ type: Float.Type) throws -> Float { throw reader.fallBack() }
    mutating func decode(_ type: Int.Type) throws -> Int { take(try reader.integer(try current(type), as: type)) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { take(try reader.integer(try current(type), as: type)) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { take(try reader.integer(try current(type), as: type)) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { take(try reader.integer(try current(type), as: type)) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { take(try reader.integer(try current(type), as: type)) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { take(try reader.integer(try current(type), as: type)) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { take(try reader.integer(try current(type), as: type)) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { take(try reader.integer(try current(type), as: type)) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { take(try reader.integer(try current(type), as: type)) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { take(try reader.integer(try current(type), as: type)) }
    mutating func decode(_ type: Int128.Type) throws -> Int128 { throw reader.fallBack() }
    mutating func decode(_ type: UInt128.Type) throws -> UInt128 { throw reader.fallBack() }
    mutating func decodeIfPresent(_ type: Int128.Type) throws -> Int128? { throw reader.fallBack() }
    mutating func decodeIfPresent(_ type: UInt128.Type) throws -> UInt128? { throw reader.fallBack() }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { take(try reader.decode(type, at: try current(type))) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        take(try reader.keyed(try current(KeyedDecodingContainer<NestedKey>.self), by: type))
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        take(try reader.unkeyed(try current(Unkeyed.self)))
    }

    mutating func superDecoder() throws -> any Decoder { throw reader.fallBack() }
}

private struct Single: SingleValueDecodingContainer {
    let reader: Reader
    let index: Int

    var codingPath: [any CodingKey] { [] }

    func decodeNil() -> Bool { reader.isNull(index) }
    func decode(_ type: Bool.Type) throws -> Bool { try reader.bool(index) }
    func decode(_ type: String.Type) throws -> String { try reader.string(index) }
    func decode(_ type: Double.Type) throws -> Double { try reader.double(index) }
    func decode(_ type: Float.Type) throws -> Float { throw reader.fallBack() }
    func decode(_ type: Int.Type) throws -> Int { try reader.integer(index, as: type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try reader.integer(index, as: type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try reader.integer(index, as: type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try reader.integer(index, as: type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try reader.integer(index, as: type) }
    func decode(_ type: UInt.Type) throws -> UInt { try reader.integer(index, as: type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try reader.integer(index, as: type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try reader.integer(index, as: type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try reader.integer(index, as: type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try reader.integer(index, as: type) }
    func decode(_ type: Int128.Type) throws -> Int128 { throw reader.fallBack() }
    func decode(_ type: UInt128.Type) throws -> UInt128 { throw reader.fallBack() }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try reader.decode(type, at: index) }
}
