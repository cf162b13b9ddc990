// Runs the conformance suite on the merging example adapter and prints the report.
//
//     swift run merging-conform            # exit 0 when it passes
import Foundation
import MergingAdapter
import RerouteConformance

let report = checkConformance(PairMergingAdapter(policy: .fastVRelease(tier: .t192)))
print(report.rendered())
exit(report.passed ? 0 : 1)
