//! Element-wise helpers on the current rayon pool.

use rayon::prelude::*;

/// Values per parallel task.
const CHUNK: usize = 1 << 16;

/// `a[i] += b[i]`.
pub fn add_assign_f32(a: &mut [f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "add_assign_f32: lengths");
    a.par_chunks_mut(CHUNK).zip(b.par_chunks(CHUNK)).for_each(|(a, b)| {
        for (x, y) in a.iter_mut().zip(b) {
            *x += *y;
        }
    });
}

/// `a[i] *= b[i]`.
pub fn mul_assign_f32(a: &mut [f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "mul_assign_f32: lengths");
    a.par_chunks_mut(CHUNK).zip(b.par_chunks(CHUNK)).for_each(|(a, b)| {
        for (x, y) in a.iter_mut().zip(b) {
            *x *= *y;
        }
    });
}
