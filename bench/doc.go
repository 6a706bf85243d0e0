// Package bench is the performance report of nri-image-verifier: `make
// bench` runs TestReport with -report, which measures, side by side in one
// run on one machine,
//
//  1. a warm decision through the real NRI socket (pkg/adaptation, the
//     runtime side containerd embeds) against a no-op NRI plugin;
//  2. a cold verification of never-seen digests (cosign key, legacy and
//     bundle formats, a signed index) against a loopback registry, counting
//     HTTP requests, against cosign's own library (the nested module
//     cosignpeer, kept out of the main go.mod);
//  3. the same behind a proxy that adds 20 ms of round-trip time;
//  4. a burst of 200 concurrent creates over 10 images on a cold cache, and
//     the warm decision throughput;
//  5. the daemon's resident memory after 10,000 cached verdicts, its binary
//     size and the allocations of a warm decision;
//  6. with the real containerd (root only), the share of creates whose
//     verdict was already cached by pre-warming when the CRI pulled the
//     image.
//
// The report starts with a table of the targets, measured, met or not;
// docs/performance.md explains the method and the numbers.
//
// Without -report (as in `make test`) TestReport runs every section once
// with tiny counts, checking that the measurement code works and that the
// decisions are right; it asserts no timing. Knobs: -peer=false skips the
// cosign peer (no module download); NIV_SKIP_CONTAINERD=1 skips section 6,
// which otherwise runs as root with -report (or with
// NIV_BENCH_CONTAINERD=1); NIV_BENCH_DAEMON_ENV="GOGC=50 ..." sets the
// daemon's environment in section 5.
package bench
