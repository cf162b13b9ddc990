// Runs the conformance suite on the example adapters and prints the reports.
//
//     swift run dart-style-conform            # exit 0 when every adapter passes
import DARTStyleAdapter
import Foundation
import RerouteConformance

let reports = [
    checkConformance(DuplicationAwareAdapter.tier(.t192)),
    checkConformance(DuplicationAwareAdapter.tier(.t64)),
    checkConformance(SeededRandomAdapter(seed: 7, keepRatio: 0.25)),
]
for r in reports { print(r.rendered()) }
exit(reports.allSatisfy(\.passed) ? 0 : 1)
