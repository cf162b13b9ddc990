import CRerouteAllocationCounter
import CRerouteKernels
import Foundation
import RerouteBench
import RerouteFast
import RerouteFixtures
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteTrace
import RerouteVerify
import Testing

/// The fast decoder against the reference on random models and cases, for every policy
/// (SPEC.md §10.3). Seeds: fixed ones plus REROUTE_SEED or a fresh one (`TestSeeds`); each is
/// its own test case, so a failure names its seed.
@Suite struct FastDecoderDifferentialTests {
    /// A random model: MHA or GQA, with or without q/k/v bias, head dims that are not powers
    /// of two (6, 10, 12, 14; RoPE needs them even), 1 to 16 layers, and a third of the time
    /// M-RoPE with a random section; a random case with a random span, grid and (half the
    /// time) non-contiguous positions, or Qwen2-VL's 3-D positions on an M-RoPE model.
    static func world(_ seed: UInt64) -> (ModelWeights, PromptCase) {
        var rng = SplitMix64(seed: seed)
        let c = RandomModel.config(layers: 1 + rng.integer(below: 16), rng: &rng)
        let w = RandomModel.weights(c, visionDim: 7, seed: seed &+ 7)
        let grid = ImageGrid(rows: 2 + rng.integer(below: 4), cols: 2 + rng.integer(below: 4))
        let prefix = 1 + rng.integer(below: 4), suffix = 1 + rng.integer(below: 3)
        let positions: RandomCase.Positions = c.mropeSection != nil ? .multimodal : rng.integer(below: 2) == 0 ? .gapped : .contiguous
        let cs = RandomCase.make(config: c, name: "random-\(seed)", grid: grid, prefix: prefix, suffix: suffix, visual: .features(width: 7),
                                 positions: positions, decodeSteps: 3, similarityWidth: 8, clsFeature: true, seed: seed &+ 3)
        return (w, cs)
    }

    /// A catalog policy made executable on `layers` layers: when its 32-layer schedule does
    /// not remap, its decisions are spread over 1 ..< layers instead (dropping what does not fit).
    static func adapt(_ p: RoutingPolicy, layers: Int, mrope: Bool = false) -> RoutingPolicy? {
        if mrope, p.requiresOneDimensionalPositions { return nil }  // re-indexing and VisionZip's layout are 1-D only (SPEC.md §4, §8.16)
        if !mrope, p.positions.requiresMultimodal { return nil }  // the recomputed M-RoPE rules are 3-D only
        if (try? p.schedule(layers: layers, originalN: 16, llmN: 16)) != nil { return p }
        let count = min(p.decisionLayers.count, layers - 1)
        guard count > 0 else { return nil }
        var q = p
        q.referenceDepth = layers
        q.decisionLayers = (0..<count).map { 1 + $0 * (layers - 1) / count }
        q.keepRatios = Array(p.keepRatios.prefix(count))
        return (try? q.validate()) != nil ? q : nil
    }

    /// On every vector path this CPU supports (`pathsThisCPULacksAreNamed` names the others).
    @Test(arguments: TestSeeds.with(Array(1...9)), VectorISA.supported)
    func fastAgreesWithReferenceForEveryPolicy(seed: UInt64, isa: VectorISA) throws {
        do {
            let (w, c) = Self.world(seed)
            let reference = ReferenceDecoder(weights: w), fast = FastDecoder(weights: w, options: FastDecoderOptions(threads: 1, isa: isa))
            #expect(fast.isa == isa)
            let rules = ComparisonRules.fastVsReference(w.config, maxPosition: c.positions.maxPosition)
            for policy in PolicyCatalog.all.compactMap({ Self.adapt($0, layers: w.config.layers, mrope: c.positions.isMultimodal) }) {
                let s = Int(seed)
                let expected = try TraceRecorder.record(decoder: reference, model: "random", case: c, policy: policy, seed: s)
                let actual = try TraceRecorder.record(decoder: fast, model: "random", case: c, policy: policy, seed: s)
                let report = try judge(expected: expected, actual: actual, rules: rules) { forced in
                    try TraceRecorder.record(decoder: fast, model: "random", case: c, policy: policy, seed: s, forcedKept: forced)
                }
                #expect(report.passed, "\(policy.name) on \(w.config.layers) layers, path \(isa), \(TestSeeds.replay(seed, "fastAgreesWithReference")): \(report.render())")
            }
        }
    }

    /// A random model wide and long enough for every split of the fast decoder to cut work
    /// between workers: d = 256 (output columns in chunks of 16 over 2 workers), m = 704,
    /// 8 layers, and 24×24 visual + 9 text = 585 rows (attention row blocks, decode rows ≥
    /// 256 per worker in the LM head of 512 rows); GQA 8/2 heads of 32.
    static func largeWorld() -> (ModelWeights, PromptCase) {
        let c = ModelConfig(family: .qwen2, hiddenSize: 256, layers: 8, heads: 8, kvHeads: 2, intermediateSize: 704, rmsNormEps: 1e-6,
                            ropeTheta: 10000, vocabSize: 512, tieWordEmbeddings: false)
        let w = RandomModel.weights(c, visionDim: 32, seed: 41)
        return (w, RandomCase.make(config: c, name: "large", grid: ImageGrid(rows: 24, cols: 24), prefix: 5, suffix: 4,
                                   visual: .features(width: 32), decodeSteps: 3, seed: 42))
    }

    @Test func bitwiseReproducibleWithFixedThreads() throws {
        // The first random world deep enough for the 32-layer schedule to remap (≥ 8 layers),
        // and one large enough for the multi-worker splits.
        let small = (UInt64(1)...).lazy.map(Self.world).first { $0.0.config.layers >= 8 }!
        for (w, c) in [small, Self.largeWorld()] {
        #expect(c.sequenceLength >= 20 && (w.config.hiddenSize < 256 || c.sequenceLength >= 512))
        for threads in [1, 2] {
        for isa in VectorISA.supported {
            let fast = FastDecoder(weights: w, options: FastDecoderOptions(threads: threads, isa: isa))
            let a = try TraceRecorder.record(decoder: fast, model: "r", case: c, policy: .rerouteFastV(tier: .t128), seed: 0)
            let b = try TraceRecorder.record(decoder: fast, model: "r", case: c, policy: .rerouteFastV(tier: .t128), seed: 0)
            #expect(a.hiddenStates.flatMap { $0.flatMap { $0.map(\.bitPattern) } } == b.hiddenStates.flatMap { $0.flatMap { $0.map(\.bitPattern) } })
            #expect(a.lastLogits.map(\.bitPattern) == b.lastLogits.map(\.bitPattern) && a.decisions == b.decisions)
            #expect(a.stepLogits.flatMap { $0.map(\.bitPattern) } == b.stepLogits.flatMap { $0.map(\.bitPattern) })
            #expect(a.provenance.isa == isa.rawValue)
        }
        }
        }
    }

    /// Every pair of paths this CPU supports agrees within the fast decoder's tolerance, and
    /// the paths really are different code (their results are not bit-identical).
    @Test(.enabled(if: VectorISA.supported.count > 1, "this CPU has one vector path only"))
    func vectorPathsAgreeWithinTheFastTolerance() throws {
        let (w, c) = Self.largeWorld()
        let rules = ComparisonRules.fastVsReference(w.config, maxPosition: c.positions.maxPosition)
        let policy = Self.adapt(.rerouteFastV(tier: .t128), layers: w.config.layers)!
        let traces = try VectorISA.supported.map { isa in
            try TraceRecorder.record(decoder: FastDecoder(weights: w, options: FastDecoderOptions(threads: 2, isa: isa)), model: "large",
                                     case: c, policy: policy, seed: 0)
        }
        for (a, b) in zip(traces, traces.dropFirst()) {
            let v = compareTraces(expected: a, actual: b, rules: rules)
            #expect(v.passed, "\(a.provenance.isa!) vs \(b.provenance.isa!): \(v.render())")
            #expect(a.hiddenStates.flatMap { $0.flatMap { $0.map(\.bitPattern) } } != b.hiddenStates.flatMap { $0.flatMap { $0.map(\.bitPattern) } },
                    "\(a.provenance.isa!) and \(b.provenance.isa!) gave bit-identical states: the path switch did nothing")
        }
    }

    /// A path the CPU lacks is never run: asking for it by name is refused, naming the CPU's
    /// paths, and a decoder asked for it narrows to the widest it has.
    @Test(.enabled(if: VectorISA.widest < .avx512, "this CPU supports every vector path"))
    func pathsThisCPULacksAreNamed() throws {
        let (w, _) = Self.world(1)
        for isa in VectorISA.allCases where isa > .widest {
            print("skipped: the \(isa) vector path: this CPU's widest is \(VectorISA.widest) (tests and verify run \(VectorISA.supported.map(\.rawValue)))")
            #expect(throws: VectorISAError.self) { try VectorISA.parse(isa.rawValue, source: "REROUTE_ISA=\(isa)") }
            #expect(FastDecoder(weights: w, options: FastDecoderOptions(isa: isa)).isa == .widest)
        }
        #expect(try VectorISA.requested(environment: ["REROUTE_ISA": "portable"]) == .portable)
        #expect(try VectorISA.requested(environment: [:]) == nil)
        #expect(throws: VectorISAError.self) { try VectorISA.requested(environment: ["REROUTE_ISA": "AVX2"]) }
    }

    /// The large model's fast run agrees with the reference (the splits change no result
    /// beyond the float32 tolerance).
    @Test func largeModelAgreesWithReference() throws {
        let (w, c) = Self.largeWorld()
        let rules = ComparisonRules.fastVsReference(w.config, maxPosition: c.positions.maxPosition)
        let fast = FastDecoder(weights: w, options: FastDecoderOptions(threads: 2))
        let policy = Self.adapt(.rerouteFastV(tier: .t128), layers: w.config.layers)!
        let expected = try TraceRecorder.record(decoder: ReferenceDecoder(weights: w), model: "large", case: c, policy: policy, seed: 0)
        let verdict = try judge(expected: expected, actual: try TraceRecorder.record(decoder: fast, model: "large", case: c, policy: policy, seed: 0),
                                rules: rules) { try TraceRecorder.record(decoder: fast, model: "large", case: c, policy: policy, seed: 0, forcedKept: $0) }
        #expect(verdict.passed, "\(verdict.render())")
    }

    /// The KV cache is allocated once, at the size the budget calculator gives.
    @Test func kvCacheBytesEqualTheBudget() throws {
        let w = try ModelWeights.load(directory: Repo.model("tiny-qwen2"))
        var c = GoldenTraces.traceCase(for: w, model: "tiny-qwen2")
        for steps in [0, 1, 4] {
            c.decodeSteps = steps
            for policy in [RoutingPolicy.dense, .pyramidDrop(), .rerouteNuwa(tier: .t64), .reroutePDrop(tier: .t192)] {
                let (state, _) = try RoutedPrefill.run(decoder: FastDecoder(weights: w), case: c, policy: policy)
                let budget = try BudgetCalculator.report(config: w.config, policy: policy,
                                                         textTokens: c.prefixTokens.count + c.suffixTokens.count, grid: c.grid,
                                                         bytesPerElement: 4)
                let decodeSlots = max(0, steps - 1) * w.config.layers * 2 * w.config.kvWidth * 4
                #expect(state.kvAllocatedBytes == budget.totalKVBytes + decodeSlots, "\(policy.name), \(steps) steps")
            }
        }
    }
}

/// The elementwise and row kernels and the FMA peak loop, on every path this CPU has.
@Suite struct VectorPathKernelTests {
    static let inputs: [Float] = (0..<1003).map { Float(sin(Double($0) * 0.37)) * 12 }

    @Test(arguments: VectorISA.supported)
    func swiGLUAndSoftmaxAreWithinAFewUlpOfDouble(isa: VectorISA) {
        let x = Self.inputs, u = x.map { 1 + $0 / 24 }
        var g = x
        reroute_swiglu(isa.code, &g, u, g.count)
        for i in x.indices {
            let e = Double(x[i]) / (1 + Foundation.exp(-Double(x[i]))) * Double(u[i])
            #expect(abs(Double(g[i]) - e) <= 6e-7 * max(abs(e), 1e-30) + 1e-37, "\(isa) swiglu at \(i): \(g[i]) vs \(e)")
        }
        for n in [1, 7, 8, 9, 16, 17, 1003] {
            var s = Array(x.prefix(n))
            reroute_softmax(isa.code, &s, n)
            let m = x.prefix(n).max()!, total = x.prefix(n).map { Foundation.exp(Double($0 - m)) }.reduce(0, +)
            for i in 0..<n {
                let e = Foundation.exp(Double(x[i] - m)) / total
                #expect(abs(Double(s[i]) - e) <= 1e-6 * e + 1e-38, "\(isa) softmax n=\(n) at \(i): \(s[i]) vs \(e)")
            }
        }
    }

    @Test(arguments: VectorISA.supported)
    func rmsNormAndRoPEAreWithinAFewUlpOfDouble(isa: VectorISA) {
        let x = Self.inputs
        for n in [1, 7, 8, 9, 16, 17, 1003] {
            let w = (0..<n).map { 0.5 + Float($0 % 7) / 8 }
            var y = [Float](repeating: .nan, count: n)
            reroute_rmsnorm(isa.code, x, w, &y, n, 1e-5)
            let ms = x.prefix(n).map { Double($0) * Double($0) }.reduce(0, +) / Double(n)
            for i in 0..<n {
                let e = Double(x[i]) / (ms + 1e-5).squareRoot() * Double(w[i])
                #expect(abs(Double(y[i]) - e) <= 2e-6 * abs(e) + 1e-37, "\(isa) rmsnorm n=\(n) at \(i): \(y[i]) vs \(e)")
            }
            var inPlace = Array(x.prefix(n))
            inPlace.withUnsafeMutableBufferPointer { p in reroute_rmsnorm(isa.code, p.baseAddress!, w, p.baseAddress!, n, 1e-5) }
            #expect(inPlace.map(\.bitPattern) == y.map(\.bitPattern), "\(isa) rmsnorm in place")
        }
        for (heads, dh) in [(1, 2), (3, 18), (2, 32), (4, 64), (1, 100)] {
            let half = dh / 2
            let angles = (0..<half).map { Double($0 + 1) * 0.71 }
            let c = angles.map { Float(Foundation.cos($0)) }, sn = angles.map { Float(Foundation.sin($0)) }
            var v = Array(x.prefix(heads * dh))
            reroute_rope(isa.code, &v, Int32(heads), Int32(dh), c, sn)
            for h in 0..<heads {
                for i in 0..<half {
                    let a = Double(x[h * dh + i]), b = Double(x[h * dh + i + half])
                    let e0 = a * Double(c[i]) - b * Double(sn[i]), e1 = b * Double(c[i]) + a * Double(sn[i])
                    let bound = 2e-7 * (abs(a) + abs(b)) + 1e-37
                    #expect(abs(Double(v[h * dh + i]) - e0) <= bound, "\(isa) rope \(heads)x\(dh) head \(h) at \(i)")
                    #expect(abs(Double(v[h * dh + i + half]) - e1) <= bound, "\(isa) rope \(heads)x\(dh) head \(h) at \(i + half)")
                }
            }
        }
    }

    /// The portable path is the plain scalar definition, bit for bit (SPEC.md §10.1).
    @Test func portablePathIsTheScalarDefinition() {
        let x = Self.inputs, u = x.map { 1 + $0 / 24 }
        var g = x
        reroute_swiglu(VectorISA.portable.code, &g, u, g.count)
        #expect(g.map(\.bitPattern) == zip(x, u).map { ($0 / (1 + expf(-$0)) * $1).bitPattern })
        var s = x
        reroute_softmax(VectorISA.portable.code, &s, s.count)
        let m = x.max()!
        var e = x.map { expf($0 - m) }, total: Float = 0
        for v in e { total += v }
        e = e.map { $0 * (1 / total) }
        #expect(s.map(\.bitPattern) == e.map(\.bitPattern))
        let w = x.map { 1 - $0 / 32 }
        var y = x
        reroute_rmsnorm(VectorISA.portable.code, x, w, &y, x.count, 1e-6)
        var squares: Float = 0
        for v in x { squares += v * v }
        let inv = 1 / (squares / Float(x.count) + 1e-6).squareRoot()
        #expect(y.map(\.bitPattern) == zip(x, w).map { ($0 * inv * $1).bitPattern })
        let (cs, sn) = ((0..<50).map { Float(Foundation.cos(Double($0))) }, (0..<50).map { Float(Foundation.sin(Double($0))) })
        var r = Array(x.prefix(200))
        reroute_rope(VectorISA.portable.code, &r, 2, 100, cs, sn)
        var expected = Array(x.prefix(200))
        for h in 0..<2 {
            for i in 0..<50 {
                let a = x[h * 100 + i], b = x[h * 100 + i + 50]
                let ac = a * cs[i], bs = b * sn[i], bc = b * cs[i], asn = a * sn[i]
                expected[h * 100 + i] = ac - bs
                expected[h * 100 + i + 50] = bc + asn
            }
        }
        #expect(r.map(\.bitPattern) == expected.map(\.bitPattern))
    }

    @Test(arguments: VectorISA.supported)
    func fmaPeakLoopCountsItsOperations(isa: VectorISA) {
        let lanes: Double = [.portable: 1, .avx2: 8, .avx512: 16][isa]!
        #expect(reroute_fma_peak_loop(isa.code, 1000) == 2 * lanes * 12 * 1000)
        #expect(MachineProbes.fmaPeak(isa, threads: 1, iterations: 100_000, repeats: 1) > 1e8)
    }
}

/// The packed-weight kernel (`CRerouteKernels`) against a Double product, on shapes that cut
/// every block edge: rows around the 6- and 12-row tiles and the row block (`REROUTE_PACK_MC`),
/// outputs around the 16-column panel, the AVX-512 kernel's pairs of panels and the gemv's groups
/// of four, inputs around the k block (`REROUTE_PACK_KC`) and its multiples.
@Suite struct PackedKernelTests {
    static let mc = Int(REROUTE_PACK_MC), kc = Int(REROUTE_PACK_KC)
    @Test(.enabled(if: VectorISA.widest >= .avx2, "needs AVX2 and FMA"),
          arguments: [(3, 20, 0), (1, 1, 1), (5, 15, 7), (6, 16, kc), (7, 17, kc + 1), (12, 32, 9), (13, 40, 2 * kc + 88),
                      (25, 79, 300), (mc - 4, 33, kc - 1), (mc + 1, 48, 2 * kc + 1), (2 * mc + 6, 20, 64), (2, 80, kc + 5)])
    func matchesDoubleProduct(rows: Int, out: Int, inner: Int) {
        var rng = SplitMix64(seed: UInt64(rows * 1_000_003 + out * 1009 + inner))
        func random() -> Float { Float(Double(rng.next() % 2_000_001) / 1_000_000 - 1) }
        let x = (0..<(rows * inner)).map { _ in random() }, w = (0..<(out * inner)).map { _ in random() }
        var packed = [Float](repeating: .nan, count: reroute_packed_count(Int32(out), Int32(inner)))
        reroute_pack_weights(w, Int32(out), Int32(inner), &packed)
        let panels = (out + 15) / 16
        // The rows packed for a path, whole and split in two at a tile (as the workers split
        // the packing): both give the same floats.
        func packedRows(_ isa: VectorISA) -> [Float] {
            let count = reroute_packed_rows_count(Int32(rows), Int32(inner))
            let tiles = (rows + Int(reroute_pack_tile_rows(isa.code)) - 1) / Int(reroute_pack_tile_rows(isa.code))
            var whole = [Float](repeating: .nan, count: count), split = whole
            reroute_pack_rows(isa.code, Int32(rows), Int32(inner), x, Int32(inner), &whole, 0, Int32(tiles))
            reroute_pack_rows(isa.code, Int32(rows), Int32(inner), x, Int32(inner), &split, 0, Int32(tiles / 2))
            reroute_pack_rows(isa.code, Int32(rows), Int32(inner), x, Int32(inner), &split, Int32(tiles / 2), Int32(tiles))
            #expect(whole.map(\.bitPattern) == split.map(\.bitPattern), "\(isa): the packing depends on its split")
            return whole
        }
        // On each path: all panels at once, one panel per call, and panel 0 then the rest (as
        // splits over workers would); every path and split gives the same bits.
        let paths = VectorISA.supported.filter { $0 >= .avx2 }
        var whole = [Float](repeating: .nan, count: rows * out)
        reroute_packed_gemm(paths[0].code, Int32(rows), Int32(out), Int32(inner), packedRows(paths[0]), packed, &whole, Int32(out), 0, Int32(panels))
        #expect(whole.allSatisfy { $0.isFinite }, "an output element was not written")
        for isa in paths {
            let xp = packedRows(isa)
            var all = [Float](repeating: .nan, count: rows * out), single = all, skewed = all
            reroute_packed_gemm(isa.code, Int32(rows), Int32(out), Int32(inner), xp, packed, &all, Int32(out), 0, Int32(panels))
            for p in 0..<panels {
                reroute_packed_gemm(isa.code, Int32(rows), Int32(out), Int32(inner), xp, packed, &single, Int32(out), Int32(p), Int32(p + 1))
            }
            reroute_packed_gemm(isa.code, Int32(rows), Int32(out), Int32(inner), xp, packed, &skewed, Int32(out), 0, 1)
            reroute_packed_gemm(isa.code, Int32(rows), Int32(out), Int32(inner), xp, packed, &skewed, Int32(out), 1, Int32(panels))
            #expect(all.map(\.bitPattern) == whole.map(\.bitPattern), "the \(isa) path differs from the \(paths[0]) path")
            #expect(single.map(\.bitPattern) == whole.map(\.bitPattern), "\(isa): the result depends on the panel split")
            #expect(skewed.map(\.bitPattern) == whole.map(\.bitPattern), "\(isa): the result depends on the panel split")
            // Tiles of W's rows packed on their own from bf16 bits (as a mapped checkpoint holds
            // them, aligned or not) and written at their column offset give the bits of the whole
            // widened matrix's product, whatever the tile height.
            let bits = w.map { UInt16($0.bitPattern >> 16) }, widened = bits.map { Float(bitPattern: UInt32($0) << 16) }
            var packedWide = [Float](repeating: .nan, count: reroute_packed_count(Int32(out), Int32(inner)))
            reroute_pack_weights(widened, Int32(out), Int32(inner), &packedWide)
            var wideProduct = [Float](repeating: .nan, count: rows * out)
            reroute_packed_gemm(isa.code, Int32(rows), Int32(out), Int32(inner), xp, packedWide, &wideProduct, Int32(out), 0, Int32(panels))
            var shifted = [UInt8](repeating: 0, count: 2 * bits.count + 1)  // the elements at an odd address
            bits.withUnsafeBytes { b in for i in 0..<b.count { shifted[i + 1] = b[i] } }
            for (tileRows, misaligned) in [(16, false), (32, true), (48, false)] {
                var tiled = [Float](repeating: .nan, count: rows * out)
                for r0 in stride(from: 0, to: out, by: tileRows) {
                    let r1 = min(out, r0 + tileRows)
                    var tile = [Float](repeating: .nan, count: reroute_packed_count(Int32(r1 - r0), Int32(inner)))
                    if misaligned {
                        shifted.withUnsafeBytes { reroute_pack_weights_bf16(isa.code, $0.baseAddress! + 1 + 2 * r0 * inner, Int32(r1 - r0), Int32(inner), &tile) }
                    } else {
                        bits.withUnsafeBytes { reroute_pack_weights_bf16(isa.code, $0.baseAddress! + 2 * r0 * inner, Int32(r1 - r0), Int32(inner), &tile) }
                    }
                    tiled.withUnsafeMutableBufferPointer {
                        reroute_packed_gemm(isa.code, Int32(rows), Int32(r1 - r0), Int32(inner), xp, tile, $0.baseAddress! + r0, Int32(out), 0,
                                            Int32((r1 - r0 + 15) / 16))
                    }
                }
                #expect(tiled.map(\.bitPattern) == wideProduct.map(\.bitPattern), "\(isa): tiles of \(tileRows) bf16 rows differ from the whole")
            }
            // The one-vector product (a decode step) gives each row of the product bit for bit,
            // all panels at once or split at panel 1.
            for i in 0..<rows {
                let xi = Array(x[(i * inner)..<((i + 1) * inner)])
                var y = [Float](repeating: .nan, count: out), ySplit = y
                reroute_packed_gemv(isa.code, Int32(out), Int32(inner), xi, packed, &y, 0, Int32(panels))
                reroute_packed_gemv(isa.code, Int32(out), Int32(inner), xi, packed, &ySplit, 0, 1)
                reroute_packed_gemv(isa.code, Int32(out), Int32(inner), xi, packed, &ySplit, 1, Int32(panels))
                let row = whole[(i * out)..<((i + 1) * out)].map(\.bitPattern)
                #expect(y.map(\.bitPattern) == row, "\(isa): the gemv of row \(i) differs from the product's row")
                #expect(ySplit.map(\.bitPattern) == row, "\(isa): the gemv of row \(i) depends on the panel split")
            }
        }
        var worst = 0.0
        for i in 0..<rows {
            for o in 0..<out {
                var exact = 0.0, magnitude = 0.0
                for k in 0..<inner {
                    exact += Double(x[i * inner + k]) * Double(w[o * inner + k])
                    magnitude += abs(Double(x[i * inner + k]) * Double(w[o * inner + k]))
                }
                // Float accumulation: |error| ≤ inner · 2^-24 · Σ|x w| (a loose, standard bound).
                worst = max(worst, abs(Double(whole[i * out + o]) - exact) / (Double(inner) * 0x1p-24 * magnitude + 1e-30))
            }
        }
        #expect(worst <= 1, "error \(worst) × the bound")
    }

    /// The default row limit follows the path (whatever sgemm OpenBLAS runs); an explicit limit wins.
    @Test func packedRowCrossoverByPathAndBLASCore() throws {
        #expect(FastDecoder.packedRowCrossover(isa: .portable, blasCore: "Cooperlake") == 0)
        #expect(FastDecoder.packedRowCrossover(isa: .avx2, blasCore: "Haswell") == 128)
        #expect(FastDecoder.packedRowCrossover(isa: .avx2, blasCore: "SkylakeX") == 128)
        for core in ["SkylakeX", "Cooperlake", "SAPPHIRERAPIDS", "Haswell", "Zen", "Prescott"] {
            #expect(FastDecoder.packedRowCrossover(isa: .avx512, blasCore: core) >= 1 << 20)
        }
        let w = try ModelWeights.load(directory: Repo.model("tiny-llama"))
        for isa in VectorISA.supported {
            let standard = FastDecoder(weights: w, options: .init(isa: isa))
            #expect(standard.packedRowLimit == FastDecoder.packedRowCrossover(isa: isa), "\(isa)")
            #expect(standard.usesPackedWeights == (isa >= .avx2))
            #expect(FastDecoder(weights: w, options: .init(packedRowLimit: 0, isa: isa)).packedRowLimit == 0)
            #expect(FastDecoder(weights: w, options: .init(packedRowLimit: 40, isa: isa)).packedRowLimit == (isa >= .avx2 ? 40 : 0))
        }
    }

    /// Packed and OpenBLAS-only runs of the fast decoder agree within the decoder tolerance,
    /// prefill and decode, and the packed path is taken in both (the runs are not bitwise equal).
    @Test(.enabled(if: VectorISA.widest >= .avx2, "needs AVX2 and FMA"))
    func packedAndOpenBLASRunsAgree() throws {
        let w = try ModelWeights.load(directory: Repo.model("tiny-qwen2"))
        let c = GoldenTraces.traceCase(for: w, model: "tiny-qwen2")
        let runs = try [128, 0].map { limit in
            try TraceRecorder.record(decoder: FastDecoder(weights: w, options: .init(packedRowLimit: limit)), model: "tiny-qwen2", case: c,
                                     policy: .rerouteFastV(tier: .t128), seed: 0)
        }
        let diff = compareTraces(expected: runs[1], actual: runs[0], rules: .fastVsReference(w.config))
        #expect(diff.passed, "\(diff.render())")
        #expect(runs[0].lastLogits.map(\.bitPattern) != runs[1].lastLogits.map(\.bitPattern))
        // Decode steps too take the packed path (the packed gemv) in the packed run.
        #expect(runs[0].stepLogits.count > 1)
        for step in 1..<runs[0].stepLogits.count {
            #expect(runs[0].stepLogits[step].map(\.bitPattern) != runs[1].stepLogits[step].map(\.bitPattern), "decode step \(step)")
        }
    }
}

/// The attention kernel (`reroute_causal_attention`) against a Double causal attention, on
/// token counts around the 6- and 12-row tiles and the 16-key panels, head dims that are and
/// are not multiples of 16, and row strides wider than a head (as heads sit in a row of q).
@Suite struct AttentionKernelTests {
    @Test(.enabled(if: VectorISA.widest >= .avx2, "needs AVX2 and FMA"),
          arguments: [(1, 16), (5, 8), (6, 24), (7, 16), (12, 32), (13, 40), (17, 128), (33, 64), (100, 48), (130, 128)])
    func matchesDoubleAttention(n: Int, headDim dh: Int) {
        var rng = SplitMix64(seed: UInt64(n * 7919 + dh))
        func random() -> Float { Float(Double(rng.next() % 2_000_001) / 1_000_000 - 1) }
        // q rows hold three heads (this one second), k and v rows two (this one first).
        let ldq = 3 * dh, ldkv = 2 * dh, scale = 1 / Float(dh).squareRoot()
        let q = (0..<(n * ldq)).map { _ in 2 * random() }, k = (0..<(n * ldkv)).map { _ in 2 * random() }
        let v = (0..<(n * ldkv)).map { _ in random() }
        var expected = [Double](repeating: 0, count: n * dh), bound = [Double](repeating: 0, count: n)
        for i in 0..<n {
            // Standard float bounds, |v| ≤ 1: a score errs by at most dh · ε · scale · Σ|q k|,
            // which the exponential turns into a relative error of the weights; the sums of
            // i + 1 weights and of i + 1 products add (i + 1) · ε each; doubled for margin.
            let magnitude = (0...i).map { j in Double(scale) * (0..<dh).reduce(0.0) { $0 + abs(Double(q[i * ldq + dh + $1]) * Double(k[j * ldkv + $1])) } }.max()!
            bound[i] = 2 * 0x1p-24 * (2 * Double(dh) * magnitude + 2 * Double(i + 1) + 8)
            var s = (0...i).map { j in Double(scale) * (0..<dh).reduce(0.0) { $0 + Double(q[i * ldq + dh + $1]) * Double(k[j * ldkv + $1]) } }
            let top = s.max()!
            s = s.map { exp($0 - top) }
            let total = s.reduce(0, +)
            for c in 0..<dh { expected[i * dh + c] = (0...i).reduce(0.0) { $0 + s[$1] / total * Double(v[$1 * ldkv + c]) } }
        }
        var results: [VectorISA: [Float]] = [:]
        for isa in VectorISA.supported where isa >= .avx2 {
            // The output head sits between sentinel heads; the workspace starts as NaN, so a
            // value read before it is written shows.
            var out = [Float](repeating: -7, count: n * ldq)
            var workspace = [Float](repeating: .nan, count: reroute_attention_workspace_count(Int32(n), Int32(dh)))
            q.withUnsafeBufferPointer { qp in
                out.withUnsafeMutableBufferPointer { op in
                    reroute_causal_attention(isa.code, Int32(n), Int32(dh), scale, qp.baseAddress! + dh, Int32(ldq), k, Int32(ldkv), v, Int32(ldkv),
                                             op.baseAddress! + dh, Int32(ldq), &workspace)
                }
            }
            var worst = 0.0, sentinelsKept = true
            for i in 0..<n {
                for c in 0..<ldq {
                    let value = out[i * ldq + c]
                    if c < dh || c >= 2 * dh { sentinelsKept = sentinelsKept && value == -7; continue }
                    worst = max(worst, abs(Double(value) - expected[i * dh + c - dh]) / bound[i])
                }
            }
            #expect(sentinelsKept, "\(isa): wrote outside its head")
            #expect(worst <= 1, "\(isa): error \(worst) × the bound")
            results[isa] = (0..<n).flatMap { i in out[(i * ldq + dh)..<(i * ldq + 2 * dh)] }
        }
        // Repeated on the same inputs: the same bits.
        if let (isa, first) = results.first {
            var again = [Float](repeating: 0, count: n * dh)
            var workspace = [Float](repeating: 0, count: reroute_attention_workspace_count(Int32(n), Int32(dh)))
            q.withUnsafeBufferPointer { qp in
                reroute_causal_attention(isa.code, Int32(n), Int32(dh), scale, qp.baseAddress! + dh, Int32(ldq), k, Int32(ldkv), v, Int32(ldkv),
                                         &again, Int32(dh), &workspace)
            }
            #expect(again.map(\.bitPattern) == first.map(\.bitPattern))
        }
    }
}

/// Buffers are allocated once per run (in `begin`), never per token: with the thread's own
/// allocation counter (the forwarding allocator linked into the tests and `reroute`), a
/// layer, `begin` and the outputs allocate the same number of times at 45 and at 180 tokens.
@Suite struct FastDecoderAllocationTests {
    struct Counts: Equatable, CustomStringConvertible {
        var begin = 0, layers: [Int] = [], outputs = 0
        var description: String { "begin \(begin), layers \(layers), outputs \(outputs)" }
    }

    static func count(_ w: ModelWeights, grid: Int) throws -> Counts {
        let c = RandomCase.make(config: w.config, name: "alloc", grid: ImageGrid(rows: grid, cols: grid), prefix: 35, suffix: 1,
                                visual: .embeddings, decodeSteps: 0, seed: 7)
        // One worker: the whole run is on this thread, so its counter sees every allocation.
        let fast = FastDecoder(weights: w, options: .init(recordHiddenStates: false, threads: 1))
        let plan = ExecutionPlan.dense(layers: w.config.layers, case: c)
        var counts = Counts()
        reroute_thread_allocations_start()
        var state = try fast.begin(c, kvCapacity: nil)
        counts.begin = reroute_thread_allocations_stop()
        for l in 0..<w.config.layers {
            reroute_thread_allocations_start()
            fast.run(layer: l, plan: plan.layers[l], state: &state)
            counts.layers.append(reroute_thread_allocations_stop())
        }
        reroute_thread_allocations_start()
        _ = fast.prefillOutputs(state).lastLogits
        counts.outputs = reroute_thread_allocations_stop()
        return counts
    }

    /// Counted on the calling thread, so OpenBLAS must run single-threaded, as `reroute` sets
    /// it; the test process is configured by its launcher (tools/test.sh), never by a test.
    @Test(.enabled(if: BLASThreads.current == 1, "needs single-threaded OpenBLAS: run through tools/test.sh (OPENBLAS_NUM_THREADS=1)"))
    func allocationsDoNotGrowWithTokens() throws {
        let w = try ModelWeights.load(directory: Repo.model("tiny-llama"))
        _ = try Self.count(w, grid: 2)  // first-use caches of the runtime and OpenBLAS
        let small = try Self.count(w, grid: 3), large = try Self.count(w, grid: 12)
        #expect(small.layers.allSatisfy { $0 > 0 }, "the counting allocator is not in effect: \(small)")
        #expect(small == large, "45 tokens: \(small); 180 tokens: \(large)")
    }
}

/// Real-size checkpoints: bf16 matrices stay in the mapped file and are widened tile by tile.
@Suite struct MappedWeightsTests {
    @Test func mappedBF16RunsMatchFloat32Runs() throws {
        let dir = Repo.model("tiny-llama")  // stored in bf16
        let mapped = try ModelWeights.load(directory: dir, storage: .mappedBF16)
        let f32 = try ModelWeights.load(directory: dir)
        #expect(mapped.layers.allSatisfy { $0.q.isMapped && $0.down.isMapped && $0.q.values.isEmpty } && mapped.embedding.isMapped)
        #expect(mapped.projector.map { !$0.linear1.isMapped } == true)  // small tensors are widened
        #expect(!f32.layers[0].q.isMapped)
        let c = GoldenTraces.traceCase(for: f32, model: "tiny-llama")
        for policy in [RoutingPolicy.dense, .rerouteFastV(tier: .t192)] {
            let a = try TraceRecorder.record(decoder: FastDecoder(weights: f32), model: "tiny-llama", case: c, policy: policy, seed: 0)
            let b = try TraceRecorder.record(decoder: FastDecoder(weights: mapped), model: "tiny-llama", case: c, policy: policy, seed: 0)
            // Widening is exact: the prefill differs only where the products run differently (the
            // portable path's OpenBLAS tiles; on the vector paths it is bit-identical, next test),
            // decode by sgemv on widened tiles against the packed gemv: within the fast tolerance.
            let report = compareTraces(expected: a, actual: b, rules: .fastVsReference(f32.config))
            #expect(report.passed, "\(policy.name): \(report.render())")
            #expect(a.decisions.map(\.kept) == b.decisions.map(\.kept) && a.decodeTokens == b.decodeTokens)
        }
    }

    /// On the vector paths the packed-weight kernel multiplies mapped bf16 matrices tile by tile
    /// as it packs them, so prefills give the f32 run's bits: whatever the tile size, down to one
    /// pair of panels per tile (tiny-llama's gate and up matrices then span 6 tiles).
    @Test(.enabled(if: VectorISA.widest >= .avx2, "needs AVX2 and FMA"),
          arguments: VectorISA.supported.filter { $0 >= .avx2 })
    func mappedPrefillsGiveTheFloat32Bits(isa: VectorISA) throws {
        let dir = Repo.model("tiny-llama")
        let mapped = try ModelWeights.load(directory: dir, storage: .mappedBF16), f32 = try ModelWeights.load(directory: dir)
        let c = GoldenTraces.traceCase(for: f32, model: "tiny-llama")
        for policy in [RoutingPolicy.dense, .rerouteFastV(tier: .t192)] {
            let a = try TraceRecorder.record(decoder: FastDecoder(weights: f32, options: .init(threads: 2, isa: isa)), model: "tiny-llama",
                                             case: c, policy: policy, seed: 0)
            for tile in [32 * 64, 1 << 21] {
                let decoder = FastDecoder(weights: mapped, options: .init(threads: 2, isa: isa, packedTileFloats: tile))
                #expect(decoder.usesPackedWeights && decoder.isa == isa)
                let b = try TraceRecorder.record(decoder: decoder, model: "tiny-llama", case: c, policy: policy, seed: 0)
                #expect(!a.hiddenStates.isEmpty && a.hiddenStates.count == b.hiddenStates.count)
                #expect(a.hiddenStates.map { $0.map { $0.map(\.bitPattern) } } == b.hiddenStates.map { $0.map { $0.map(\.bitPattern) } },
                        "\(isa), \(policy.name), tiles of \(tile) floats: the hidden states differ")
                #expect(a.decisions == b.decisions, "\(isa), \(policy.name): the decisions differ")
            }
        }
    }
}
