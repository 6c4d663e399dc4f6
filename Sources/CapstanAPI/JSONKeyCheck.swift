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
        let bytes = [UInt8](data)
        // One frame per open object or array: the keys seen so far (objects), and the key or
        // index under which the frame sits in its parent.
        struct Frame {
            var isObject: Bool
            var keys: Set<String> = []
            var label: String
            var index = 0
            var expectingKey = true
        }
        var stack: [Frame] = []
        var index = 0
        func path() -> String {
            var text = ""
            for frame in stack.dropFirst() {
                if frame.label.hasPrefix("[") { text += frame.label } else { text += text.isEmpty ? frame.label : ".\(frame.label)" }
            }
            return text
        }
        var pendingLabel = ""
        while index < bytes.count {
            let c = bytes[index]
            switch c {
            case UInt8(ascii: "\""):
                guard let (string, end) = readString(bytes, from: index) else { return nil }
                index = end
                if var top = stack.last, top.isObject, top.expectingKey {
                    if !top.keys.insert(string).inserted { return Duplicate(path: path(), key: string) }
                    top.expectingKey = false
                    stack[stack.count - 1] = top
                    pendingLabel = string
                }
                continue
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var label = pendingLabel
                if let top = stack.last, !top.isObject { label = "[\(top.index)]" }
                stack.append(Frame(isObject: c == UInt8(ascii: "{"), label: label))
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                _ = stack.popLast()
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

    /// The string starting at `start` (a quote), unescaped, and the index after its closing quote.
    private static func readString(_ bytes: [UInt8], from start: Int) -> (String, Int)? {
        var index = start + 1
        var raw: [UInt8] = []
        var escaped = false
        while index < bytes.count {
            let c = bytes[index]
            if escaped {
                escaped = false
                raw.append(c)
            } else if c == UInt8(ascii: "\\") {
                escaped = true
                raw.append(c)
            } else if c == UInt8(ascii: "\"") {
                let text = String(decoding: raw, as: UTF8.self)
                // Escapes (\u0061 is "a") compare by what they mean.
                if raw.contains(UInt8(ascii: "\\")), let data = "\"\(text)\"".data(using: .utf8),
                   let unescaped = try? JSONDecoder().decode(String.self, from: data) {
                    return (unescaped, index + 1)
                }
                return (text, index + 1)
            } else {
                raw.append(c)
            }
            index += 1
        }
        return nil
    }
}
