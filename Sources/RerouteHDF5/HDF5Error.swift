/// An HDF5 operation that failed, naming the file and the object (group, dataset or
/// attribute path). HDF5's own error printing is switched off; this is what callers see.
public struct HDF5Error: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case cannotOpen = "cannot open"
        case cannotCreate = "cannot create"
        case missing = "missing"
        case wrongType = "wrong type"
        case wrongShape = "wrong shape"
        case tooLarge = "too large"
        case ioFailed = "I/O failed"
    }

    public var kind: Kind
    public var file: String
    public var object: String?
    public var detail: String

    public init(_ kind: Kind, file: String, object: String? = nil, _ detail: String) {
        self.kind = kind
        self.file = file
        self.object = object
        self.detail = detail
    }

    public var description: String {
        if let object { return "\(file): \(object): \(kind.rawValue): \(detail)" }
        return "\(file): \(kind.rawValue): \(detail)"
    }
}
