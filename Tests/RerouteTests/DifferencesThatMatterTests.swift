import Foundation
import RerouteModel
import RerouteRouting
import RerouteTrace
import RerouteVerify
import Testing

/// Variants that engines ship under one name, told apart on the same case (README
/// "Differences that matter").
@Suite struct DifferencesThatMatterTests {
    /// DART as published against its embedding-level variant on the M-RoPE model's trace case,
    /// at the same tier: the comparison names the decision that only one side takes (layer 0
    /// against layer 1, with what each keeps), the layer whose processed set first differs and
    /// the tokens that differ there.
    @Test func dartAgainstItsEmbeddingLevelVariant() throws {
        let embed = try Goldens.record(.dartEmbed(tier: .t192), model: "tiny-qwen2-vl")
        let dart = try Goldens.record(.dart(tier: .t192), model: "tiny-qwen2-vl")
        #expect(embed.decisions.map(\.layer) == [0] && dart.decisions.map(\.layer) == [1])
        let kEmbed = CountRule.ceil.count(of: 48, ratio: 192.0 / 576), kDart = CountRule.dartPivotQuota.count(of: 48, ratio: 192.0 / 576)
        #expect(kEmbed == 16 && kDart == 20, "48 tokens: ⌈16⌉ against the 4 image pivots and 8 quotas of ⌊16/8⌋ = 2")
        let v = compareTraces(expected: embed, actual: dart, rules: .reference)
        #expect(!v.passed)
        let failed = v.findings.filter(\.failed)
        let atZero = try #require(failed.first { $0.object == "/prefill/decisions/00" && $0.summary.contains("layer 0 in actual") })
        #expect(atZero.summary.contains("keeps \(kEmbed) of 48") && atZero.summary.contains("decides at layers [1]"))
        let atOne = try #require(failed.first { $0.object == "/prefill/decisions" && $0.summary.contains("unexpected decision at layer 1 in actual") })
        #expect(atOne.summary.contains("keeps \(kDart) of 48") && atOne.summary.contains("expected decides at layers [0]"))
        // Layer 0 runs every token under DART and the text + 16 kept under the variant: the
        // first processed set to differ is layer 0's, and it names the tokens only DART runs.
        let firstSet = try #require(failed.first { $0.object.hasPrefix("/prefill/processed[") })
        #expect(firstSet.object == "/prefill/processed[0]")
        let onlyDart = Set(dart.processed[0]).subtracting(embed.processed[0]).sorted()
        #expect(onlyDart.count == 48 - kEmbed && firstSet.summary.contains("only actual \(Array(onlyDart.prefix(8)))".dropLast()))
        // From layer 1 on, DART runs 20 and the variant 16: different sets, named.
        #expect(dart.processed[1].count - embed.processed[1].count == kDart - kEmbed)
        #expect(failed.contains { $0.object == "/prefill/processed[1]" })
        #expect(failed.contains { $0.object.hasPrefix("/prefill/logits") || $0.object.hasPrefix("/decode") })
    }

    /// EVS with vLLM's recomputed M-RoPE positions against the same selection with every
    /// token's original positions, on the video case: the decisions are the same, the
    /// positions differ from layer 0 (the first routed layer) exactly at the text after the
    /// video, which restarts at base + cols = 8 instead of transformers' base + t_max + 1 = 11,
    /// and so do the hidden states, the logits and the tokens.
    @Test func evsKeptAgainstRecomputedPositions() throws {
        let kept = try Goldens.record(.evs(pruningRate: 0.5, recomputed: false), model: "tiny-qwen2-vl")
        let recomputed = try Goldens.record(.evs(pruningRate: 0.5), model: "tiny-qwen2-vl")
        #expect(kept.input.grid == ImageGrid(rows: 3, cols: 4, frames: 4) && kept.input.name == "trace-video-4x3x4-mrope")
        #expect(kept.decisions.map(\.kept) == recomputed.decisions.map(\.kept) && kept.decisions[0].kept.count == 24)
        #expect(kept.decisions[0].kept.prefix(12) == ArraySlice(0..<12), "all of frame 0")
        let v = compareTraces(expected: kept, actual: recomputed, rules: .reference)
        let failed = v.findings.filter(\.failed)
        #expect(!failed.contains { $0.object.contains("/decisions") })
        let suffix = Array((kept.sequenceLength - 4)..<kept.sequenceLength)
        let first = try #require(failed.first { $0.object.hasPrefix("/prefill/positions[") })
        #expect(first.object == "/prefill/positions[0]")
        #expect(first.summary.contains("4 of 32 tokens differ; first at sequence index \(suffix[0]): expected [11, 11, 11], actual [8, 8, 8]"))
        for l in 0..<kept.config.layers {
            let p = kept.processed[l]
            for (k, token) in p.enumerated() {
                let a = kept.layerPositions[l].axes.map { $0[k] }, b = recomputed.layerPositions[l].axes.map { $0[k] }
                #expect((a == b) == !suffix.contains(token), "layer \(l) token \(token): \(a) vs \(b)")
            }
        }
        #expect(failed.contains { $0.object == "/prefill/decode_positions[0]" && $0.summary == "expected 15, actual 12" })
        #expect(failed.contains { $0.object == "/prefill/hidden_states[1]" })
        #expect(failed.contains { $0.object == "/prefill/logits" })
    }
}
