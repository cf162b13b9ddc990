import Foundation
import RerouteModel
import RerouteReference
import Testing

/// Each formula of SPEC.md §2 against values that can be checked by hand.
@Suite struct ReferenceMathTests {
    @Test func linearIsRowTimesVectorPlusBias() {
        let w = Matrix(rows: 2, cols: 3, values: [1, 2, 3, 4, 5, 6])
        #expect(ReferenceMath.linear([1, 0, -1], w) == [-2, -2])
        #expect(ReferenceMath.linear([1, 1, 1], w, bias: [0.5, -1]) == [6.5, 14])
    }

    @Test func rmsNormDividesByRootMeanSquare() {
        // mean(3², 4²) = 12.5; 3/√12.5 = 0.848528…, 4/√12.5 = 1.131370…
        let y = ReferenceMath.rmsNorm([3, 4], weight: [1, 1], eps: 0)
        #expect(abs(y[0] - 3 / 12.5.squareRoot()) < 1e-15 && abs(y[1] - 4 / 12.5.squareRoot()) < 1e-15)
        // The weight scales per element; ε is added to the mean square, not to the root.
        let z = ReferenceMath.rmsNorm([3, 4], weight: [2, 0.5], eps: 0.5)
        #expect(abs(z[0] - 2 * 3 / 13.0.squareRoot()) < 1e-15 && abs(z[1] - 0.5 * 4 / 13.0.squareRoot()) < 1e-15)
    }

    @Test func ropeFrequenciesAreThetaPowers() {
        let f = ReferenceMath.ropeInverseFrequencies(headDim: 4, theta: 10000)
        #expect(f == [1, 0.01])
    }

    @Test func ropeRotatesHalfPairs() {
        let f = ReferenceMath.ropeInverseFrequencies(headDim: 4, theta: 10000)
        // Pairs are (0, 2) and (1, 3) ("rotate half"), not adjacent elements.
        let y = ReferenceMath.rope([1, 0, 0, 0], positions: [1, 1], inverseFrequencies: f)
        #expect(y == [cos(1.0), 0, sin(1.0), 0])
        let z = ReferenceMath.rope([0, 1, 0, 0], positions: [100, 100], inverseFrequencies: f)
        #expect(z == [0, cos(1.0), 0, sin(1.0)])  // φ = 100 · 0.01
        #expect(ReferenceMath.rope([1, 2, 3, 4], positions: [0, 0], inverseFrequencies: f) == [1, 2, 3, 4])
    }

    @Test func ropeScoresDependOnlyOnRelativePosition() {
        let f = ReferenceMath.ropeInverseFrequencies(headDim: 8, theta: 10000)
        let q: [Double] = [0.3, -1.2, 0.7, 2.0, -0.4, 0.9, 1.1, -0.6]
        let k: [Double] = [1.0, 0.2, -0.5, 0.3, 0.8, -1.4, 0.1, 0.6]
        func dot(_ m: Int, _ n: Int) -> Double {
            zip(ReferenceMath.rope(q[...], positions: Array(repeating: m, count: 4), inverseFrequencies: f),
                ReferenceMath.rope(k[...], positions: Array(repeating: n, count: 4), inverseFrequencies: f)).reduce(0) { $0 + $1.0 * $1.1 }
        }
        #expect(abs(dot(7, 3) - dot(104, 100)) < 1e-12)
        #expect(abs(dot(7, 3) - dot(3, 7)) > 1e-3)  // and it does depend on the offset
    }

    @Test func softmaxIsNormalisedAndShiftInvariant() {
        let p = ReferenceMath.softmax([0, log(3)])
        #expect(abs(p[0] - 0.25) < 1e-15 && abs(p[1] - 0.75) < 1e-15)
        let shifted = ReferenceMath.softmax([1000, 1000 + log(3)])  // no overflow: the max is subtracted
        #expect(abs(shifted[0] - 0.25) < 1e-12 && abs(shifted[1] - 0.75) < 1e-12)
    }

    @Test func activations() {
        #expect(ReferenceMath.silu(0) == 0)
        #expect(abs(ReferenceMath.silu(1) - 1 / (1 + exp(-1.0))) < 1e-16)
        #expect(abs(ReferenceMath.gelu(1) - 0.8413447460685429) < 1e-15)  // Φ(1)
        #expect(abs(ReferenceMath.gelu(-1) + 0.15865525393145707) < 1e-15)
    }

    @Test func attentionWithOneKeyReturnsItsValue() {
        let v: [Double] = [1, 2, 3, 4]
        let out = ReferenceMath.attend(query: [5, -1, 2, 0.5], keys: [[0.1, 0.2, 0.3, 0.4]], values: [v],
                                       heads: 2, kvHeads: 2, headDim: 2)
        #expect(out == v)
    }

    @Test func attentionAveragesEqualScoresAndMapsGQAGroups() {
        // 2 query heads share 1 KV head (GQA). Keys are orthogonal to both queries, so the
        // scores tie and each head returns the mean of the values.
        let out = ReferenceMath.attend(query: [0, 1, 0, 2], keys: [[1, 0], [2, 0]], values: [[1, 10], [3, 30]],
                                       heads: 2, kvHeads: 1, headDim: 2)
        #expect(out == [2, 20, 2, 20])
        // 4 heads, 2 KV heads: heads 0,1 read KV head 0; heads 2,3 read KV head 1.
        let grouped = ReferenceMath.attend(query: [Double](repeating: 0, count: 4), keys: [[0, 0]], values: [[7, 9]],
                                           heads: 4, kvHeads: 2, headDim: 1)
        #expect(grouped == [7, 7, 9, 9])
    }

    @Test func swiGLU() {
        let gate = Matrix(rows: 1, cols: 1, values: [2]), up = Matrix(rows: 1, cols: 1, values: [3])
        let down = Matrix(rows: 1, cols: 1, values: [0.5])
        // down · (silu(2x) · 3x) at x = 1
        #expect(abs(ReferenceMath.swiGLU([1], gate: gate, up: up, down: down)[0] - 0.5 * ReferenceMath.silu(2) * 3) < 1e-15)
    }

    @Test func argmaxTakesTheFirstMaximum() {
        #expect(ReferenceMath.argmax([1, 3, 3, 2]) == 1)
        #expect(ReferenceMath.argmax([-1]) == 0)
    }

    @Test func float16WideningMatchesTheHardwareTypeForAllBitPatterns() {
        for bits in 0...UInt16.max {
            let ours = float16ToFloat(bits)
            let swift = Float(Float16(bitPattern: bits))
            if swift.isNaN {
                #expect(ours.isNaN, "bits \(bits)")
            } else if ours.bitPattern != swift.bitPattern {
                Issue.record("f16 \(String(bits, radix: 16)): \(ours) vs \(swift)")
                return
            }
        }
        #expect(float16ToFloat(0x0001) == 0x1p-24)  // smallest subnormal
        #expect(float16ToFloat(0x7BFF) == 65504)
        #expect(float16ToFloat(0x8000).sign == .minus)
    }

    @Test func bfloat16IsTheTopHalfOfFloat() {
        #expect(bfloat16ToFloat(0x3F80) == 1)
        #expect(bfloat16ToFloat(0xC040) == -3)
        #expect(bfloat16ToFloat(0x7F80) == .infinity)
    }
}
