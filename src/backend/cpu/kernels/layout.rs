//! Copies that only move values (axis permutations, concatenation along an axis), split over
//! the current rayon pool. candle's CPU backend does these on one thread; at 16 threads they
//! were a quarter of a full-size chunk's wall time (docs/benchmarks.md, CPU at 2, 8 and 16 threads).

use rayon::prelude::*;

/// Output values per parallel task.
const TASK: usize = 1 << 15;

/// `out` = `x` (contiguous, shape `dims`) with its axes reordered: output axis `i` is input axis
/// `perm[i]`, so `out` has shape `[dims[perm[0]], dims[perm[1]], ...]`, contiguous.
pub fn permute_f32(x: &[f32], dims: &[usize], perm: &[usize], out: &mut [f32]) {
    let n = dims.len();
    assert_eq!(perm.len(), n, "permute_f32: rank");
    assert_eq!(x.len(), dims.iter().product::<usize>(), "permute_f32: input length");
    assert_eq!(out.len(), x.len(), "permute_f32: output length");
    let mut seen = vec![false; n];
    for &p in perm {
        assert!(p < n && !seen[p], "permute_f32: {perm:?} is not a permutation");
        seen[p] = true;
    }
    if x.is_empty() {
        return;
    }
    if n == 0 {
        out[0] = x[0];
        return;
    }
    let mut in_stride = vec![1usize; n];
    for k in (0..n - 1).rev() {
        in_stride[k] = in_stride[k + 1] * dims[k + 1];
    }
    let od: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let st: Vec<usize> = perm.iter().map(|&p| in_stride[p]).collect();
    // The block copied per row: the last output axis, or the last two when the last is short
    // (depth-to-space ends in a 2-value axis).
    let inner = if n >= 2 && od[n - 1] < 16 { 2 } else { 1 };
    let outer = n - inner;
    let block: usize = od[outer..].iter().product();
    let rows_per_task = (TASK / block.max(1)).max(1);
    out.par_chunks_mut(block * rows_per_task).enumerate().for_each(|(task, chunk)| {
        for (r, orow) in chunk.chunks_mut(block).enumerate() {
            let mut row = task * rows_per_task + r;
            let mut base = 0;
            for d in (0..outer).rev() {
                base += (row % od[d]) * st[d];
                row /= od[d];
            }
            if inner == 1 {
                let s = st[n - 1];
                if s == 1 {
                    orow.copy_from_slice(&x[base..base + block]);
                } else {
                    for (j, o) in orow.iter_mut().enumerate() {
                        *o = x[base + j * s];
                    }
                }
            } else {
                let (len, s1, s2) = (od[n - 1], st[n - 2], st[n - 1]);
                for (a, o2) in orow.chunks_mut(len).enumerate() {
                    let b = base + a * s1;
                    for (j, o) in o2.iter_mut().enumerate() {
                        *o = x[b + j * s2];
                    }
                }
            }
        }
    });
}

/// Concatenation along an axis: every part is `outer` rows of its own length (`part.len() /
/// outer` values), and each output row is the parts' rows one after the other (for NCHW
/// tensors concatenated along C: `outer` = B).
pub fn concat_f32(parts: &[&[f32]], outer: usize, out: &mut [f32]) {
    let lens: Vec<usize> = parts.iter().map(|p| if outer == 0 { 0 } else { p.len() / outer }).collect();
    for (p, l) in parts.iter().zip(&lens) {
        assert_eq!(p.len(), l * outer, "concat_f32: a part is not {outer} whole rows");
    }
    let row: usize = lens.iter().sum();
    assert_eq!(out.len(), row * outer, "concat_f32: output length");
    out.par_chunks_mut(TASK).enumerate().for_each(|(task, chunk)| {
        let mut pos = task * TASK;
        let mut done = 0;
        while done < chunk.len() {
            let (o, mut r) = (pos / row, pos % row);
            let mut k = 0;
            while r >= lens[k] {
                r -= lens[k];
                k += 1;
            }
            let n = (lens[k] - r).min(chunk.len() - done);
            let src = o * lens[k] + r;
            chunk[done..done + n].copy_from_slice(&parts[k][src..src + n]);
            done += n;
            pos += n;
        }
    });
}
