import ArgumentParser
import RerouteModel

/// The range every numeric command-line option accepts (SPEC.md §12), checked in the
/// commands' `validate()` before any work, so no number from the command line reaches
/// arithmetic or an allocation unchecked.
enum OptionLimits {
    static let repeats = 1...10_000
    static let warmup = 0...10_000
    /// Fast-decoder workers: each owns scratch buffers sized by the model.
    static let threads = 1...256
    static let jobs = 1...256
    static let benchLayers = 1...128
    static let policyRounds = 1...10_000
    static let packedRowLimit = 0...(1 << 16)
    /// Text tokens of a budget prompt (with the grid, within PromptCase.maxSequenceLength).
    static let textTokens = 1...PromptCase.maxSequenceLength
    static let kvBytes = 1...16
    static let maxReported = 0...100_000
    static let routeSlack = 0...(1 << 24)

    /// `value` must lie in `range`; the message names the option.
    static func check(_ option: String, _ value: Int?, _ range: ClosedRange<Int>) throws {
        guard let value else { return }
        guard range.contains(value) else {
            throw ValidationError("\(option) must be \(range.lowerBound)…\(range.upperBound), got \(value)")
        }
    }
}
