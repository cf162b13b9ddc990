/// An input the suite cannot use: a malformed checkpoint, config, case or trace.
///
/// Every input error names the file, the object inside it (tensor, key, dataset) when
/// there is one, and what is wrong. The CLI maps it to exit code 2.
public struct InputError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What went wrong, coarse enough for tests to assert on.
    public enum Kind: String, Sendable, Equatable {
        case fileNotFound = "file not found"
        case unreadable = "unreadable"
        case truncated = "truncated"
        case badHeader = "bad header"
        case badJSON = "bad JSON"
        case unsupportedDType = "unsupported dtype"
        case badShape = "bad shape"
        case outOfRange = "out of range"
        case overlap = "overlapping tensors"
        case missingTensor = "missing tensor"
        case duplicateTensor = "duplicate tensor"
        case shapeMismatch = "shape does not match the config"
        case badConfig = "bad config"
        case unsupportedModel = "unsupported model"
        case badCase = "bad case"
        case badValue = "bad value"
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
