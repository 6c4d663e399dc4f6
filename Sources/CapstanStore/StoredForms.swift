/// The JSON of the latest objects written, as the store wrote them, by revision: a watch line or
/// the answer to a write is made from it instead of encoding the object again. Bounded (the
/// latest few thousand revisions); Secrets are never kept (their stored form is sealed). At a
/// delete's revision it holds the object as it was, when the store has that (etcd's watch).
///
/// SQLite stores an object with its `metadata.revision`; etcd without it (a key's revision is
/// etcd's own), so it is put in when the object is asked for.
public final class StoredForms: Sendable {
    private let ring: RevisionRing<[UInt8]>
    /// Whether the stored JSON already holds `metadata.revision`.
    public let carriesRevision: Bool

    public init(capacity: Int = 4096, carriesRevision: Bool) {
        ring = RevisionRing(capacity: capacity)
        self.carriesRevision = carriesRevision
    }

    /// Keeps what was committed at `revision`. Only committed writes: a revision is never given
    /// twice once committed, so what is kept for it stays true.
    public func put(_ revision: UInt64, _ json: [UInt8]) { ring.put(revision, json) }

    /// The object written at `revision` as JSON with its `metadata.revision`, while it is among
    /// the latest; nil otherwise.
    public func object(at revision: UInt64) -> [UInt8]? {
        guard let stored = ring.get(revision) else { return nil }
        return carriesRevision ? stored : Self.withRevision(stored, revision)
    }

    /// `stored` (an object's JSON without a revision) with `"revision":R` as the first key of its
    /// metadata, or nil when it has no metadata object.
    public static func withRevision(_ stored: [UInt8], _ revision: UInt64) -> [UInt8]? {
        let marker = Array(#""metadata":{"#.utf8)
        guard let at = stored.firstRange(of: marker)?.upperBound, at < stored.count else { return nil }
        let number = Array(String(revision).utf8)
        var json: [UInt8] = []
        json.reserveCapacity(stored.count + 32)
        json += stored[..<at]
        json += Array(#""revision":"#.utf8)
        json += number
        if stored[at] != UInt8(ascii: "}") { json.append(UInt8(ascii: ",")) }
        json += stored[at...]
        return json
    }
}
