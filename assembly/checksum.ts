// An order-sensitive checksum of memory, for a cache that refers to its caller's input
// instead of copying it: the forward sums x, the backward sums it again and refuses a change.
//
// Fletcher's sums on u32 words in four lanes: word i goes to lane i % 4, s1 += w, s2 += s1
// (mod 2³²). A changed word always changes s1; a moved one changes s2 unless the change,
// times how far it moved, is a multiple of 2³². Lanes follow the word's index in the whole
// run, so a run summed in parts (a batch in parts) gives the sums of the whole.

/** Sums `words` words at p, word k being word first + k of the run; state: s1, then s2 (4 u32 each), updated. */
export function checksum(p: usize, words: i32, first: i32, state: usize): void {
  let k = 0;
  // Until the run's index is a multiple of 4, so that vector lanes are the words' lanes.
  for (; k < words && ((first + k) & 3) != 0; k++) addWord(state, (first + k) & 3, load<u32>(p + (<usize>k << 2)));
  if (ASC_FEATURE_SIMD) {
    let s1 = v128.load(state);
    let s2 = v128.load(state, 16);
    for (; k + 8 <= words; k += 8) {
      const q = p + (<usize>k << 2);
      s1 = i32x4.add(s1, v128.load(q));
      s2 = i32x4.add(s2, s1);
      s1 = i32x4.add(s1, v128.load(q, 16));
      s2 = i32x4.add(s2, s1);
    }
    v128.store(state, s1);
    v128.store(state, s2, 16);
  }
  for (; k < words; k++) addWord(state, (first + k) & 3, load<u32>(p + (<usize>k << 2)));
}

// @ts-ignore: decorator
@inline function addWord(state: usize, lane: i32, w: u32): void {
  const a = state + (<usize>lane << 2);
  const s1 = load<u32>(a) + w;
  store<u32>(a, s1);
  store<u32>(a, load<u32>(a, 16) + s1, 16);
}
