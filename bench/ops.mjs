// What each benchmarked operation must move, per float32 element, and the bandwidth-probe
// loop (bench/bandwidth.mjs) that bounds it: its speed of light is bytes ÷ that loop's GB/s
// at the operation's working-set size (arrays · elements · 4 bytes). `adds`: the f32x4
// additions and subtractions per four elements in the package's algorithm, whose accuracy
// needs them (x − shift before any sum; x − mean before scaling), for the adder floor.
export const OPS = {
  train: { bytes: 12, arrays: 2, loop: "triad", adds: 5, note: "x read twice, out written; x − c, Σv, Σv², x − mean, + β" },
  test: { bytes: 8, arrays: 2, loop: "copy", adds: 2, note: "x read, out written; x − mean, + β" },
  backward: { bytes: 12, arrays: 3, loop: "triad", adds: 6, note: "x and dout read, dx written; x − c, Σdout, Σdout·v, x − mean, dout − m, − b·v" },
  "backward-graph": { bytes: 12, arrays: 3, loop: "triad", adds: 6, note: "as backward" },
};
