import Foundation

/// Finds a key that appears twice in one JSON object, in one pass over the bytes.
///
/// Decoders keep one of two equal keys without a word, so a body could say one thing to a
/// reviewer and another to the server; the API refuses such bodies. Malformed JSON is left for
/// the decoder to report: this check only looks for duplicates in what it can read.
public enum JSONKeyCheck {
    public struct Duplicate: Equatable, Sendable {
        /// Where the object is, dotted like a validation path (`spec.template`).
        public var path: String
        public var key: String
    }

    public static func firstDuplicate(in data: Data) -> Duplicate? {
        data.withUnsafeBytes { raw in firstDuplicate(in: raw.bindMemory(to: UInt8.self)) }
    }

    /// A string in the input: its bytes between the quotes, and whether it has escapes.
    private struct Span {
        var start: Int
        var end: Int
        var escaped: Bool
    }

    /// A key of an open object; an escaped one with what it means, decoded once.
    private struct Key {
        var span: Span
        var unescaped: String?
    }

    /// Deeper input is left to the decoder, which refuses more than 512 levels: the frames kept
    /// here stay bounded whatever a body holds.
    static let maxDepth = 512

    /// One open object or array.
    private struct Frame {
        var isObject: Bool
        /// Where the frame sits in its parent: a key (objects) or an index (arrays).
        var key: Span?
        var position: Int?
        /// Arrays: the index of the current element. Objects: whether a key comes next.
        var index = 0
        var expectingKey = true
        /// Where this object's keys begin in the shared key list.
        var keysStart: Int
        /// Past 32 keys, what they say, for a hashed look-up (an object of 100,000 keys must not
        /// cost 100,000² comparisons).
        var seen: Set<String>?
    }

    /// The check without copying the input or making a string per key: keys are compared as
    /// bytes where neither has an escape (escaped ones compare by what they mean).
    private static func firstDuplicate(in bytes: UnsafeBufferPointer<UInt8>) -> Duplicate? {
        var stack: [Frame] = []
        var keys: [Key] = []
        var lastKey: Span?
        var index = 0
        func text(_ span: Span) -> String {
            let raw = String(decoding: UnsafeBufferPointer(rebasing: bytes[span.start..<span.end]), as: UTF8.self)
            guard span.escaped else { return raw }
            // Escapes (\u0061 is "a") compare by what they mean.
            return (try? JSONDecoder().decode(String.self, from: Data("\"\(raw)\"".utf8))) ?? raw
        }
        func same(_ a: Key, _ b: Key) -> Bool {
            if a.unescaped != nil || b.unescaped != nil { return (a.unescaped ?? text(a.span)) == (b.unescaped ?? text(b.span)) }
            let count = a.span.end - a.span.start
            guard count == b.span.end - b.span.start else { return false }
            return count == 0 || memcmp(bytes.baseAddress! + a.span.start, bytes.baseAddress! + b.span.start, count) == 0
        }
        func path() -> String {
            var path = ""
            for frame in stack.dropFirst() {
                if let position = frame.position {
                    path += "[\(position)]"
                } else if let key = frame.key {
                    path += path.isEmpty ? text(key) : ".\(text(key))"
                }
            }
            return path
        }
        while index < bytes.count {
            let c = bytes[index]
            switch c {
            case UInt8(ascii: "\""):
                // The string's end: the next quote not escaped.
                var end = index + 1
                var escaped = false
                while end < bytes.count, bytes[end] != UInt8(ascii: "\"") {
                    if bytes[end] == UInt8(ascii: "\\") {
                        escaped = true
                        end += 1
                    }
                    end += 1
                }
                guard end < bytes.count else { return nil }
                let span = Span(start: index + 1, end: end, escaped: escaped)
                index = end + 1
                // The frame is changed in place: a copy of it would share its set, and each
                // insert would then copy the whole set.
                let top = stack.count - 1
                if top >= 0, stack[top].isObject, stack[top].expectingKey {
                    let first = stack[top].keysStart
                    let key = Key(span: span, unescaped: span.escaped ? text(span) : nil)
                    if stack[top].seen != nil {
                        let said = key.unescaped ?? text(span)
                        if !stack[top].seen!.insert(said).inserted { return Duplicate(path: path(), key: said) }
                    } else {
                        for other in keys[first...] where same(other, key) {
                            return Duplicate(path: path(), key: key.unescaped ?? text(span))
                        }
                        if keys.count - first == 32 {
                            stack[top].seen = Set(keys[first...].map { $0.unescaped ?? text($0.span) } + [key.unescaped ?? text(span)])
                        }
                    }
                    keys.append(key)
                    stack[top].expectingKey = false
                    lastKey = span
                }
                continue
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                if stack.count == maxDepth { return nil }
                var frame = Frame(isObject: c == UInt8(ascii: "{"), key: lastKey, position: nil, keysStart: keys.count)
                if let top = stack.last, !top.isObject {
                    frame.key = nil
                    frame.position = top.index
                }
                stack.append(frame)
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                if let frame = stack.popLast() { keys.removeSubrange(frame.keysStart...) }
            case UInt8(ascii: ","):
                if var top = stack.last {
                    if top.isObject { top.expectingKey = true } else { top.index += 1 }
                    stack[stack.count - 1] = top
                }
            default:
                break
            }
            index += 1
        }
        return nil
    }
}
