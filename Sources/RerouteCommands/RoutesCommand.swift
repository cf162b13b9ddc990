import ArgumentParser
import Foundation
import RerouteModel
import RerouteRouting
import RerouteTrace
import RerouteVerify

struct RoutesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "routes",
        abstract: "Draw a trace's route map: the image grid at every stage.",
        discussion: HelpText.reflowed("""
            One panel per stage (the layers before the first decision, then each decision's
            stage). Each grid cell is a visual token: processed, re-entered (processed again after
            being deferred), deferred (bypassing the stage), or removed (deleted, or dropped by a
            vision-side stage). Without --svg, prints the same map as text (P, R, d, .).
            """))
    @Argument(help: "Trace file.") var file: String
    @Option(help: "Write an SVG to this path (atomically; never over an existing file unless --overwrite, never over the trace).")
    var svg: String?
    @Flag(help: "Replace an existing --svg file.") var overwrite = false
    @Flag(help: "Machine-readable JSON on standard output (reroute.routes v1).") var json = false

    static let letter: [CellRoute: Character] = [.processed: "P", .reentered: "R", .deferred: "d", .removed: "."]

    func run() throws {
        if let svg { try FilePaths.checkOutput(svg, inputs: [file], overwrite: overwrite) }
        let t = try readTrace(file)
        let grid = t.input.grid
        let stages = t.routeStages
        func title(_ s: RouteStage) -> String { "layers \(s.firstLayer)–\(s.lastLayer)" + (s.budget.map { " (k=\($0))" } ?? "") }
        if let svg {
            try writeSVG(stages.map { (title($0), $0.cells) }, grid: grid, title: "\(t.policy.name) · \(t.provenance.model) · \(t.input.name)",
                         to: svg)
            if !json { print("wrote \(svg): \(stages.count) stage(s)") }
        }
        if json {
            struct Stage: Encodable {
                var firstLayer: Int, lastLayer: Int
                @Nullable var budget: Int?
                var counts: [String: Int], rows: [String]
            }
            struct Report: Encodable {
                var schema = "reroute.routes", schemaVersion = 1, file: String, policy: String, grid: [String: Int]
                var indexSpace = "visual grid cell: rows[r] character c is cell r·cols + c (a video's frames follow one another, rows frames·rows)"
                var legend = [["symbol": "P", "route": "processed"], ["symbol": "R", "route": "re-entered"],
                              ["symbol": "d", "route": "deferred"], ["symbol": ".", "route": "removed"]]
                var stages: [Stage]
            }
            let out = stages.map { s in
                Stage(firstLayer: s.firstLayer, lastLayer: s.lastLayer, budget: s.budget,
                      counts: Dictionary(uniqueKeysWithValues: CellRoute.allCases.map { ($0.rawValue, s.count($0)) }),
                      rows: (0..<grid.frames * grid.rows).map { r in String((0..<grid.cols).map { Self.letter[s.cells[r * grid.cols + $0]]! }) })
            }
            print(try ReportJSON.encode(Report(file: file, policy: t.policy.name, grid: ["rows": grid.rows, "cols": grid.cols, "frames": grid.frames], stages: out)))
        } else if svg == nil {
            for s in stages {
                print(title(s))
                for r in 0..<grid.frames * grid.rows { print("  " + String((0..<grid.cols).map { Self.letter[s.cells[r * grid.cols + $0]]! })) }
            }
            print("P processed, R re-entered, d deferred, . removed (rows and columns of the image grid; a video's frames one below the other)")
        }
    }

    func writeSVG(_ panels: [(title: String, cells: [CellRoute])], grid: ImageGrid, title: String, to path: String) throws {
        let cell = 12, gap = 24, top = 44
        let panelW = grid.cols * cell, panelH = grid.frames * grid.rows * cell
        let width = panels.count * (panelW + gap) + gap, height = top + panelH + 60
        let colors: [CellRoute: String] = [.processed: "#2e7d32", .reentered: "#1565c0", .deferred: "#f9a825", .removed: "#d0d0d0"]
        var s = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" font-family="sans-serif" font-size="11">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(gap)" y="18" font-size="13">\(escape(title))</text>

            """
        for (p, panel) in panels.enumerated() {
            let x0 = gap + p * (panelW + gap)
            s += "<text x=\"\(x0)\" y=\"\(top - 8)\">\(escape(panel.title))</text>\n"
            for (i, st) in panel.cells.enumerated() {
                s += "<rect x=\"\(x0 + (i % grid.cols) * cell)\" y=\"\(top + (i / grid.cols) * cell)\" width=\"\(cell - 1)\" height=\"\(cell - 1)\" fill=\"\(colors[st]!)\"/>\n"
            }
        }
        let legend: [(CellRoute, String)] = [(.processed, "processed"), (.reentered, "re-entered"), (.deferred, "deferred (bypass)"), (.removed, "removed")]
        for (i, (st, label)) in legend.enumerated() {
            let x = gap + i * 130, y = top + panelH + 24
            s += "<rect x=\"\(x)\" y=\"\(y)\" width=\"11\" height=\"11\" fill=\"\(colors[st]!)\"/><text x=\"\(x + 16)\" y=\"\(y + 10)\">\(label)</text>\n"
        }
        s += "</svg>\n"
        try Data(s.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
