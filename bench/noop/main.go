// Command noop is the benchmarks' floor hook: a static Go binary that does
// nothing, built like the hooks. LXC plus this binary on the keys the hooks
// use is what any Go hook costs before it does any work (LXC's sh -c, the
// exec, the Go runtime's start), so each hook is measured against it.
package main

func main() {}
