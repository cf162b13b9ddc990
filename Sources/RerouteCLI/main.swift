// The `reroute` executable: the commands live in the RerouteCommands library, so the argument
// surface can be fuzzed and called in-process without a copy of this entry point.
import CRerouteSys
import RerouteCommands

// Each case's decoder state is a fresh set of large buffers; kept freed blocks are reused
// instead of being faulted in again (README, Performance). Only the executable decides this.
_ = reroute_keep_freed_buffers()
RerouteCommand.main()
