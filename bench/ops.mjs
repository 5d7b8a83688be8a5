// What each benchmarked operation must move, per float32 element, and the bandwidth-probe
// loop (bench/bandwidth.mjs) that bounds it: its speed of light is bytes ÷ that loop's GB/s
// at the operation's working-set size (arrays · elements · 4 bytes).
export const OPS = {
  train: { bytes: 12, arrays: 2, loop: "triad", note: "x read twice, out written" },
  test: { bytes: 8, arrays: 2, loop: "copy", note: "x read, out written" },
  backward: { bytes: 12, arrays: 3, loop: "triad", note: "x and dout read, dx written" },
  "backward-graph": { bytes: 12, arrays: 3, loop: "triad", note: "as backward" },
};
