import CapstanCore

/// `key=value,key2=value2`: the label selector of lists, watches and `capstan get -s`.
public enum LabelSelector {
    public struct Problem: Error, Sendable {
        public var message: String
    }

    /// The selector's terms, in order; empty for an empty selector.
    /// - Throws: a term that is not `key=value`, or whose key is not a label key.
    public static func parse(_ text: String) throws(Problem) -> [(String, String)] {
        guard text.utf8.count <= 4096 else { throw Problem(message: "is longer than 4096 bytes") }
        var terms: [(String, String)] = []
        for term in text.split(separator: ",", omittingEmptySubsequences: true) {
            let parts = term.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw Problem(message: "\"\(term.prefix(80))\" is not key=value")
            }
            terms.append((parts[0], parts[1]))
        }
        return terms
    }
}
