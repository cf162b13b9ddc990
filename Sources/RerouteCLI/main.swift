// The `reroute` executable: the commands live in the RerouteCommands library, so the argument
// surface can be fuzzed and called in-process without a copy of this entry point.
import RerouteCommands

RerouteCommand.main()
