import Foundation

/// Writes the JSON that Foundation's `JSONEncoder` with `outputFormatting = .sortedKeys` writes,
/// byte for byte, in a fraction of its time.
///
/// Why byte for byte: the store compares a spec's JSON with the one it holds to decide whether
/// `metadata.generation` moves, watchers receive the stored text as it is, and template hashes
/// were computed over Foundation's output. A different key order or number format would look
/// like a spec change to every object already stored.
///
/// What Foundation writes, and so this: keys sorted by `String`'s `<` (for ASCII, byte order);
/// no whitespace; `"`, `\`, `/` and the control characters escaped (`\b \f \n \r \t`, others as
/// `\u00XX`), everything else as UTF-8; a `Double` or `Float` as its `description` without a
/// trailing `.0`; integers in decimal.
///
/// Why it is faster: values are written straight into one byte array as they are encoded. An
/// object's members are written in the order the type encodes them, each range remembered;
/// when the object ends, the ranges are put in key order (already in order: nothing moves). No
/// intermediate tree, no dictionary per object, no dynamic cast per value.
///
/// What it leaves to Foundation: anything Foundation treats specially (`Date`, `Data`, `URL`,
/// `Decimal`), nested containers and super-encoders, a key encoded twice, a value that encodes
/// nothing, a non-finite number. Those are rare in Capstan's types (none use them today); when
/// one is met the whole value is encoded again by `JSONEncoder`, so the output is still exactly
/// Foundation's, and so are its errors.
public enum SortedJSON {
    /// The JSON of `value`, as `JSONEncoder` with `.sortedKeys` writes it.
    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        if let written = try encodeWithoutFallback(value) { return written }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return Array(try encoder.encode(value))
    }

    /// The JSON written without Foundation, or nil where Foundation must take over (for
    /// tests: that the fast path is the one taken).
    static func encodeWithoutFallback<T: Encodable>(_ value: T) throws -> [UInt8]? {
        let writer = Writer()
        do {
            try writer.encodeValue(value)
            return writer.failed ? nil : writer.out
        } catch is Fallback {
            return nil
        }
    }

    /// ``encode(_:)`` as `Data`.
    public static func data<T: Encodable>(_ value: T) throws -> Data {
        Data(try encode(value))
    }
}

/// Thrown inside the writer when Foundation must take over.
private struct Fallback: Error {}

private final class Writer: Encoder {
    /// The writer's state, behind a pointer: a class's stored properties are checked for
    /// exclusive access at run time on every use, and that check cost more than the writing.
    private let state: UnsafeMutablePointer<State>

    struct State {
        var out: [UInt8] = []
        /// Set by a misuse that cannot throw where it happens (a container asked for after
        /// another, a nested container): the result is discarded and Foundation encodes.
        var failed = false
        /// Members of the objects being written, innermost last: each object owns the entries
        /// from its frame's `firstEntry` on.
        var entries: [Entry] = []
        var frames: [Frame] = []
    }

    var out: [UInt8] { state.pointee.out }
    var failed: Bool {
        get { state.pointee.failed }
        set { state.pointee.failed = newValue }
    }

    struct Entry {
        var key: String
        /// The member's bytes: `"key":value`, without the comma before it.
        var start: Int
        var end: Int
    }

    enum Kind { case none, keyed, unkeyed, single }

    struct Frame {
        var kind: Kind = .none
        var firstEntry = 0
        /// Where the container's first member begins (after `{` or `[`).
        var contentStart = 0
        var count = 0
    }

    init() {
        state = .allocate(capacity: 1)
        state.initialize(to: State())
        state.pointee.out.reserveCapacity(1024)
        state.pointee.entries.reserveCapacity(32)
        state.pointee.frames.reserveCapacity(16)
    }

    deinit {
        state.deinitialize(count: 1)
        state.deallocate()
    }

    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    // MARK: Values

    /// Writes one value: the primitives directly, anything else through its `encode(to:)` in a
    /// frame of its own.
    func encodeValue<T: Encodable>(_ value: T) throws {
        if T.self == String.self { writeString(unsafeBitCast(value, to: String.self)); return }
        if T.self == Int.self { writeInteger(unsafeBitCast(value, to: Int.self)); return }
        if T.self == Bool.self { writeBool(unsafeBitCast(value, to: Bool.self)); return }
        if T.self == Double.self { try writeDouble(unsafeBitCast(value, to: Double.self)); return }
        if T.self == Int64.self { writeInteger(unsafeBitCast(value, to: Int64.self)); return }
        if T.self == UInt64.self { writeInteger(unsafeBitCast(value, to: UInt64.self)); return }
        if T.self == Int32.self { writeInteger(unsafeBitCast(value, to: Int32.self)); return }
        if T.self == UInt32.self { writeInteger(unsafeBitCast(value, to: UInt32.self)); return }
        if T.self == Date.self || T.self == Data.self || T.self == URL.self || T.self == Decimal.self { throw Fallback() }
        if T.self == Float.self { try writeFloat(unsafeBitCast(value, to: Float.self)); return }
        state.pointee.frames.append(Frame(firstEntry: state.pointee.entries.count))
        try value.encode(to: self)
        try closeFrame()
    }

    private func closeFrame() throws {
        let frame = state.pointee.frames.removeLast()
        switch frame.kind {
        case .none:
            // Foundation refuses a top-level value that encodes nothing, and writes an empty
            // object for a member that does.
            if state.pointee.frames.isEmpty { throw Fallback() }
            state.pointee.out.append(UInt8(ascii: "{")); state.pointee.out.append(UInt8(ascii: "}"))
        case .single:
            if frame.count == 0 { throw Fallback() }
        case .unkeyed:
            state.pointee.out.append(UInt8(ascii: "]"))
        case .keyed:
            try sortMembers(from: frame.firstEntry, contentStart: frame.contentStart)
            state.pointee.entries.removeSubrange(frame.firstEntry...)
            state.pointee.out.append(UInt8(ascii: "}"))
        }
    }

    /// Puts the members written since `contentStart` in key order (a no-op when they are).
    private func sortMembers(from first: Int, contentStart: Int) throws {
        let count = state.pointee.entries.count - first
        guard count > 1 else { return }
        var sorted = true
        for i in first..<(state.pointee.entries.count - 1) where !(state.pointee.entries[i].key < state.pointee.entries[i + 1].key) {
            if state.pointee.entries[i].key == state.pointee.entries[i + 1].key { throw Fallback() }
            sorted = false
        }
        if sorted { return }
        var order = Array(first..<state.pointee.entries.count)
        order.sort { state.pointee.entries[$0].key < state.pointee.entries[$1].key }
        for i in 1..<order.count where state.pointee.entries[order[i - 1]].key == state.pointee.entries[order[i]].key { throw Fallback() }
        var members: [UInt8] = []
        members.reserveCapacity(state.pointee.out.count - contentStart)
        for (position, index) in order.enumerated() {
            if position > 0 { members.append(UInt8(ascii: ",")) }
            members.append(contentsOf: state.pointee.out[state.pointee.entries[index].start..<state.pointee.entries[index].end])
        }
        state.pointee.out.replaceSubrange(contentStart..., with: members)
    }

    // MARK: Containers

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(Keyed<Key>(writer: self, frame: open(.keyed, bracket: UInt8(ascii: "{"))))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        Unkeyed(writer: self, frame: open(.unkeyed, bracket: UInt8(ascii: "[")))
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        Single(writer: self, frame: open(.single, bracket: nil))
    }

    /// Makes the innermost frame a container of `kind` (writing its opening bracket), or finds
    /// it one already (a type may ask twice); returns the frame, -1 when there is none. Asking
    /// for another kind than the frame's, or a second single value, is a misuse: Foundation
    /// encodes instead.
    private func open(_ kind: Kind, bracket: UInt8?) -> Int {
        let index = state.pointee.frames.count - 1
        guard index >= 0 else { state.pointee.failed = true; return -1 }
        let current = state.pointee.frames[index].kind
        if current == .none {
            state.pointee.frames[index].kind = kind
            if let bracket { state.pointee.out.append(bracket) }
            state.pointee.frames[index].contentStart = state.pointee.out.count
        } else if current != kind || kind == .single {
            state.pointee.failed = true
        }
        return index
    }

    /// True when `frame` is the innermost open container (anything else is a misuse: a
    /// container kept and written after its value's `encode(to:)` returned).
    func isCurrent(_ frame: Int) -> Bool {
        if frame >= 0 && frame == state.pointee.frames.count - 1 { return true }
        state.pointee.failed = true
        return false
    }

    /// Starts a member of the innermost object: the comma, the key and its colon.
    func beginMember(_ key: String, frame: Int) -> Bool {
        guard isCurrent(frame) else { return false }
        if state.pointee.frames[frame].count > 0 { state.pointee.out.append(UInt8(ascii: ",")) }
        state.pointee.frames[frame].count += 1
        state.pointee.entries.append(Entry(key: key, start: state.pointee.out.count, end: 0))
        writeString(key)
        state.pointee.out.append(UInt8(ascii: ":"))
        return true
    }

    func endMember() { state.pointee.entries[state.pointee.entries.count - 1].end = state.pointee.out.count }

    func beginElement(frame: Int) -> Bool {
        guard isCurrent(frame) else { return false }
        if state.pointee.frames[frame].count > 0 { state.pointee.out.append(UInt8(ascii: ",")) }
        state.pointee.frames[frame].count += 1
        return true
    }

    func count(of frame: Int) -> Int { frame >= 0 && frame < state.pointee.frames.count ? state.pointee.frames[frame].count : 0 }

    func beginSingle(frame: Int) -> Bool {
        guard isCurrent(frame), state.pointee.frames[frame].count == 0 else { state.pointee.failed = true; return false }
        state.pointee.frames[frame].count = 1
        return true
    }

    // MARK: Primitives

    func writeNull() { state.pointee.out.append(contentsOf: [UInt8(ascii: "n"), UInt8(ascii: "u"), UInt8(ascii: "l"), UInt8(ascii: "l")]) }

    func writeBool(_ value: Bool) {
        if value {
            state.pointee.out.append(contentsOf: [UInt8(ascii: "t"), UInt8(ascii: "r"), UInt8(ascii: "u"), UInt8(ascii: "e")])
        } else {
            state.pointee.out.append(contentsOf: [UInt8(ascii: "f"), UInt8(ascii: "a"), UInt8(ascii: "l"), UInt8(ascii: "s"), UInt8(ascii: "e")])
        }
    }

    func writeInteger<I: FixedWidthInteger>(_ value: I) {
        if value == 0 { state.pointee.out.append(UInt8(ascii: "0")); return }
        // Digits of the magnitude, last first, into a small stack buffer (no allocation).
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 40) { buffer in
            var index = 40
            var magnitude = value.magnitude
            while magnitude != 0 {
                let (quotient, digit) = magnitude.quotientAndRemainder(dividingBy: 10)
                index -= 1
                buffer[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: digit)
                magnitude = quotient
            }
            if value < 0 { index -= 1; buffer[index] = UInt8(ascii: "-") }
            state.pointee.out.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[index..<40]))
        }
    }

    func writeDouble(_ value: Double) throws {
        guard value.isFinite else { throw Fallback() }
        writeNumberText(value.description)
    }

    func writeFloat(_ value: Float) throws {
        guard value.isFinite else { throw Fallback() }
        writeNumberText(value.description)
    }

    /// A float's `description` as Foundation writes it: without a trailing `.0`.
    private func writeNumberText(_ text: String) {
        var utf8 = Array(text.utf8)
        if utf8.count >= 2, utf8[utf8.count - 1] == UInt8(ascii: "0"), utf8[utf8.count - 2] == UInt8(ascii: ".") { utf8.removeLast(2) }
        state.pointee.out.append(contentsOf: utf8)
    }

    func writeString(_ value: String) {
        state.pointee.out.append(UInt8(ascii: "\""))
        var text = value
        text.withUTF8 { bytes in
            var mark = 0
            for index in 0..<bytes.count {
                let byte = bytes[index]
                let escape: (UInt8, UInt8)?
                switch byte {
                case UInt8(ascii: "\""): escape = (UInt8(ascii: "\\"), UInt8(ascii: "\""))
                case UInt8(ascii: "\\"): escape = (UInt8(ascii: "\\"), UInt8(ascii: "\\"))
                case UInt8(ascii: "/"): escape = (UInt8(ascii: "\\"), UInt8(ascii: "/"))
                case 0x08: escape = (UInt8(ascii: "\\"), UInt8(ascii: "b"))
                case 0x0C: escape = (UInt8(ascii: "\\"), UInt8(ascii: "f"))
                case 0x0A: escape = (UInt8(ascii: "\\"), UInt8(ascii: "n"))
                case 0x0D: escape = (UInt8(ascii: "\\"), UInt8(ascii: "r"))
                case 0x09: escape = (UInt8(ascii: "\\"), UInt8(ascii: "t"))
                case 0x00..<0x20: escape = (0, 0)
                default: continue
                }
                if index > mark { state.pointee.out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[mark..<index])) }
                mark = index + 1
                guard let (first, second) = escape, first != 0 else {
                    state.pointee.out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                            Self.hexDigits[Int(byte >> 4)], Self.hexDigits[Int(byte & 0xF)]])
                    continue
                }
                state.pointee.out.append(first); state.pointee.out.append(second)
            }
            if bytes.count > mark { state.pointee.out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[mark..<bytes.count])) }
        }
        state.pointee.out.append(UInt8(ascii: "\""))
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
}

// MARK: - Containers

private struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let writer: Writer
    let frame: Int
    var codingPath: [any CodingKey] { [] }

    private func member(_ key: Key, _ write: () throws -> Void) rethrows {
        guard writer.beginMember(key.stringValue, frame: frame) else { return }
        try write()
        writer.endMember()
    }

    mutating func encodeNil(forKey key: Key) throws { member(key) { writer.writeNull() } }
    mutating func encode(_ value: Bool, forKey key: Key) throws { member(key) { writer.writeBool(value) } }
    mutating func encode(_ value: String, forKey key: Key) throws { member(key) { writer.writeString(value) } }
    mutating func encode(_ value: Double, forKey key: Key) throws { try member(key) { try writer.writeDouble(value) } }
    mutating func encode(_ value: Float, forKey key: Key) throws { try member(key) { try writer.writeFloat(value) } }
    mutating func encode(_ value: Int, forKey key: Key) throws { member(key) { writer.writeInteger(value) } }
    mutating func encode(_ value: Int8, forKey key: Key) throws { member(key) { writer.writeInteger(value) } }
    mutating func encode(_ value: Int16, forKey key: Key) throws { member(key) { writer.writeInteger(value) } }
    mutating func encode(_ value: Int32, forKey key: Key) throws { member(key) { writer.writeInteger(value) } }
    mutating func encode(_ value: Int64, forKey key: Key) throws { member(key) { writer.writeInteger(value) } }
    mutating func encode(_ value: UInt, forKey key: Key) throws { member(key) { writer.writeInteger(value) } }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { member(key) { writer.writeInteger(value) } }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { member(key) { writer.writeInteger(value) } }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { member(key) { writer.writeInteger(value) } }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { member(key) { writer.writeInteger(value) } }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { try member(key) { try writer.encodeValue(value) } }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        writer.failed = true
        return KeyedEncodingContainer(Keyed<NestedKey>(writer: writer, frame: -1))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        writer.failed = true
        return Unkeyed(writer: writer, frame: -1)
    }

    mutating func superEncoder() -> any Encoder { writer.failed = true; return writer }
    mutating func superEncoder(forKey key: Key) -> any Encoder { writer.failed = true; return writer }
}

private struct Unkeyed: UnkeyedEncodingContainer {
    let writer: Writer
    let frame: Int
    var codingPath: [any CodingKey] { [] }
    var count: Int { writer.count(of: frame) }

    private func element(_ write: () throws -> Void) rethrows {
        guard writer.beginElement(frame: frame) else { return }
        try write()
    }

    mutating func encodeNil() throws { element { writer.writeNull() } }
    mutating func encode(_ value: Bool) throws { element { writer.writeBool(value) } }
    mutating func encode(_ value: String) throws { element { writer.writeString(value) } }
    mutating func encode(_ value: Double) throws { try element { try writer.writeDouble(value) } }
    mutating func encode(_ value: Float) throws { try element { try writer.writeFloat(value) } }
    mutating func encode(_ value: Int) throws { element { writer.writeInteger(value) } }
    mutating func encode(_ value: Int8) throws { element { writer.writeInteger(value) } }
    mutating func encode(_ value: Int16) throws { element { writer.writeInteger(value) } }
    mutating func encode(_ value: Int32) throws { element { writer.writeInteger(value) } }
    mutating func encode(_ value: Int64) throws { element { writer.writeInteger(value) } }
    mutating func encode(_ value: UInt) throws { element { writer.writeInteger(value) } }
    mutating func encode(_ value: UInt8) throws { element { writer.writeInteger(value) } }
    mutating func encode(_ value: UInt16) throws { element { writer.writeInteger(value) } }
    mutating func encode(_ value: UInt32) throws { element { writer.writeInteger(value) } }
    mutating func encode(_ value: UInt64) throws { element { writer.writeInteger(value) } }
    mutating func encode<T: Encodable>(_ value: T) throws { try element { try writer.encodeValue(value) } }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        writer.failed = true
        return KeyedEncodingContainer(Keyed<NestedKey>(writer: writer, frame: -1))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        writer.failed = true
        return Unkeyed(writer: writer, frame: -1)
    }

    mutating func superEncoder() -> any Encoder { writer.failed = true; return writer }
}

private struct Single: SingleValueEncodingContainer {
    let writer: Writer
    let frame: Int
    var codingPath: [any CodingKey] { [] }

    private func value(_ write: () throws -> Void) rethrows {
        guard writer.beginSingle(frame: frame) else { return }
        try write()
    }

    mutating func encodeNil() throws { value { writer.writeNull() } }
    mutating func encode(_ value: Bool) throws { self.value { writer.writeBool(value) } }
    mutating func encode(_ value: String) throws { self.value { writer.writeString(value) } }
    mutating func encode(_ value: Double) throws { try self.value { try writer.writeDouble(value) } }
    mutating func encode(_ value: Float) throws { try self.value { try writer.writeFloat(value) } }
    mutating func encode(_ value: Int) throws { self.value { writer.writeInteger(value) } }
    mutating func encode(_ value: Int8) throws { self.value { writer.writeInteger(value) } }
    mutating func encode(_ value: Int16) throws { self.value { writer.writeInteger(value) } }
    mutating func encode(_ value: Int32) throws { self.value { writer.writeInteger(value) } }
    mutating func encode(_ value: Int64) throws { self.value { writer.writeInteger(value) } }
    mutating func encode(_ value: UInt) throws { self.value { writer.writeInteger(value) } }
    mutating func encode(_ value: UInt8) throws { self.value { writer.writeInteger(value) } }
    mutating func encode(_ value: UInt16) throws { self.value { writer.writeInteger(value) } }
    mutating func encode(_ value: UInt32) throws { self.value { writer.writeInteger(value) } }
    mutating func encode(_ value: UInt64) throws { self.value { writer.writeInteger(value) } }
    mutating func encode<T: Encodable>(_ value: T) throws { try self.value { try writer.encodeValue(value) } }
}
