//! Running medians as `scipy.ndimage.median_filter(..., mode="reflect")` computes them along one
//! axis: the window of `size` values centred on each position (rank `size / 2` of the sorted
//! window), positions outside mirrored about the edge (`d c b a | a b c d | d c b a`).
//!
//! Each window is kept sorted and slides by one removal and one insertion (binary search and
//! a shift of at most `size` values), which for the sizes used (31) is several times cheaper
//! than selecting the median of every window afresh.

use std::cmp::Ordering;

/// scipy's `reflect` index: positions before 0 and from `len` on mirror back into `[0, len)`.
pub fn reflect(i: isize, len: usize) -> usize {
    let n = len as isize;
    let period = 2 * n;
    let mut j = i.rem_euclid(period);
    if j >= n {
        j = period - 1 - j;
    }
    j as usize
}

fn cmp(a: &f32, b: &f32) -> Ordering {
    a.total_cmp(b)
}

/// Insert `x` into the sorted `w[..len]` (room for one more).
#[inline]
fn insert(w: &mut [f32], len: usize, x: f32) {
    let i = w[..len].partition_point(|a| cmp(a, &x) == Ordering::Less);
    w.copy_within(i..len, i + 1);
    w[i] = x;
}

/// Remove one `x` from the sorted `w[..len]`; it must be there.
#[inline]
fn remove(w: &mut [f32], len: usize, x: f32) {
    let i = w[..len].partition_point(|a| cmp(a, &x) == Ordering::Less);
    debug_assert!(i < len && w[i].to_bits() == x.to_bits(), "value not in the window");
    w.copy_within(i + 1..len, i);
}

/// Median filter along a whole row (`out[i]` = median of `x[reflect(i - size/2 ..= i + size/2)]`),
/// using `window` (`size` + 1 values) as scratch.
pub fn filter_row(x: &[f32], size: usize, window: &mut [f32], out: &mut [f32]) {
    let n = x.len();
    let half = (size / 2) as isize;
    let lo = -half;
    let hi = size as isize - 1 - half;
    for (k, i) in (lo..=hi).enumerate() {
        window[k] = x[reflect(i, n)];
    }
    window[..size].sort_unstable_by(cmp);
    out[0] = window[size / 2];
    for i in 1..n as isize {
        remove(window, size, x[reflect(i - 1 + lo, n)]);
        insert(window, size - 1, x[reflect(i + hi, n)]);
        out[i as usize] = window[size / 2];
    }
}

/// One sorted window per bin, sliding along time: [`TimeMedian::slide`] removes one frame's
/// value and inserts the next one's in every bin.
pub struct TimeMedian {
    size: usize,
    bins: usize,
    /// `bins` windows of `size + 1` values (one spare for the slide).
    sorted: Vec<f32>,
}

impl TimeMedian {
    pub fn new(size: usize, bins: usize) -> Self {
        TimeMedian { size, bins, sorted: vec![0.0; bins * (size + 1)] }
    }

    /// Start the windows from `size` frames (any order).
    pub fn fill(&mut self, frames: &[&[f32]]) {
        let s = self.size;
        assert_eq!(frames.len(), s);
        for b in 0..self.bins {
            let w = &mut self.sorted[b * (s + 1)..b * (s + 1) + s];
            for (v, f) in w.iter_mut().zip(frames) {
                *v = f[b];
            }
            w.sort_unstable_by(cmp);
        }
    }

    /// Replace `old`'s values by `new`'s in every bin's window.
    pub fn slide(&mut self, old: &[f32], new: &[f32]) {
        let s = self.size;
        for (b, w) in self.sorted.chunks_exact_mut(s + 1).enumerate() {
            let (o, n) = (old[b], new[b]);
            if o.to_bits() != n.to_bits() {
                remove(w, s, o);
                insert(w, s - 1, n);
            }
        }
    }

    /// The current medians, one per bin.
    pub fn medians(&self, out: &mut [f32]) {
        let s = self.size;
        for (o, w) in out.iter_mut().zip(self.sorted.chunks_exact(s + 1)) {
            *o = w[s / 2];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], size: usize) -> Vec<f32> {
        let half = (size / 2) as isize;
        (0..x.len() as isize)
            .map(|i| {
                let mut w: Vec<f32> = (i - half..i - half + size as isize).map(|j| x[reflect(j, x.len())]).collect();
                w.sort_by(|a, b| a.total_cmp(b));
                w[size / 2]
            })
            .collect()
    }

    #[test]
    fn reflect_mirrors_like_scipy() {
        // scipy 'reflect' on [a b c d]: ... b a | a b c d | d c b a | a b ...
        let got: Vec<usize> = (-6..10).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, vec![2, 3, 3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0, 0, 1]);
    }

    #[test]
    fn sliding_rows_equal_sorting_every_window() {
        let x: Vec<f32> = (0..300).map(|i| ((i * 7919 % 97) as f32 - 40.0) * if i % 11 == 0 { 0.0 } else { 1.0 }).collect();
        for size in [1usize, 3, 4, 17, 31, 299, 301] {
            let mut w = vec![0f32; size + 1];
            let mut out = vec![0f32; x.len()];
            filter_row(&x, size, &mut w, &mut out);
            assert_eq!(out, naive(&x, size), "size {size}");
        }
    }
}
