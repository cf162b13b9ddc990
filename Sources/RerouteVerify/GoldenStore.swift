import Foundation

/// A shipped model folder under `golden/models/` and its transformers case files.
public struct GoldenModel: Sendable {
    public var name: String
    public var directory: URL
    /// Paths of `cases/*.h5`, sorted.
    public var casePaths: [String]
}

/// Finds the shipped models and cases.
public enum GoldenStore {
    /// Every folder of `root` (e.g. `golden/models`) with a `config.json`, sorted by name.
    public static func models(in root: URL) throws -> [GoldenModel] {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: root.path) else {
            throw InputErrorFromStore.missing(root.path)
        }
        return names.sorted().compactMap { name in
            let dir = root.appendingPathComponent(name)
            guard fm.fileExists(atPath: dir.appendingPathComponent("config.json").path) else { return nil }
            let casesDir = dir.appendingPathComponent("cases")
            let cases = ((try? fm.contentsOfDirectory(atPath: casesDir.path)) ?? [])
                .filter { $0.hasSuffix(".h5") }.sorted().map { casesDir.appendingPathComponent($0).path }
            return GoldenModel(name: name, directory: dir, casePaths: cases)
        }
    }

    /// The repository's `golden/models`, found from this source file (tests) or the
    /// working directory (CLI).
    public static func defaultModelsRoot(filePath: String = #filePath) -> URL {
        let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("golden/models")
        if FileManager.default.fileExists(atPath: cwd.path) { return cwd }
        var url = URL(fileURLWithPath: filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.appendingPathComponent("golden/models")
    }
}

enum InputErrorFromStore: Error, CustomStringConvertible {
    case missing(String)
    var description: String {
        switch self {
        case .missing(let p): "\(p): file not found: no golden models folder"
        }
    }
}
