//! A whole chunk pass (STFT, network, iSTFT) replayed as one CUDA graph.
//!
//! Launched op by op, an f16 chunk is ~430 short kernels, and the GPU idles between them while
//! the CPU prepares the next launch (candle's op bookkeeping, allocations, descriptor lookups).
//! [`ChunkGraphs`] records the pass once per batch size with stream capture and then launches
//! the recorded graph: one launch per batch, the same kernels with the same arguments.
//!
//! What makes the pass capturable:
//! - every allocation is stream-ordered (`cuMemAllocAsync`/`cuMemFreeAsync`), so inside the
//!   capture they become graph memory nodes, freed inside the graph again;
//! - the input and output live in buffers owned here, allocated before capture: each call
//!   copies its audio into the input buffer, launches, and copies the output buffer back;
//! - one eager pass runs first with candle's host-to-device cache on (its small parameter
//!   uploads for strided copies are cached by content), which also lets cuDNN and cuFFT pick
//!   and cache their plans and workspaces, so nothing in the captured pass uploads or
//!   synchronises;
//! - everything runs on the device's one stream (event tracking is off, see
//!   [`super::kernels::single_stream_mode`]), a non-blocking stream of its own
//!   ([`crate::device`] creates it);
//! - no other thread of the process sets up a GPU or runs a chunk pass meanwhile
//!   ([`crate::device::gpu_lock`]): creating a stream synchronises the whole context and a
//!   first launch loads kernels, either of which breaks a recording in progress (the fixture
//!   tests, four threads at once, showed both).
//!
//! Owned by the CUDA backend ([`super::Cuda`], behind a mutex); recorded and launched by
//! whichever thread runs the model (one at a time: it takes `&mut self`).
//! [`crate::options::CudaOptions::graphs`] off runs the pass launch by launch instead.

use super::kernels::{cuda_device, dev_ptr, view, wrap};
use candle_core::cuda::WrapErr;
use candle_core::cuda::cudarc::driver::{CudaGraph, CudaSlice, sys};
use candle_core::{CudaDevice, Result, Tensor, bail};
use std::collections::HashMap;

/// One recorded pass for one batch size.
struct Captured {
    /// [m, 2, chunk] f32: the audio the graph reads.
    input: Tensor,
    /// [m, stems, 2, chunk] f32: the audio the graph writes.
    output: CudaSlice<f32>,
    graph: CudaGraph,
}

// SAFETY: CUDA graph objects may be used from any thread as long as no two threads use one at
// the same time; a `Captured` is only reached through `&mut ChunkGraphs` (so it is Send, not Sync).
unsafe impl Send for Captured {}

/// Recorded chunk passes, one per batch size seen so far.
pub struct ChunkGraphs {
    dev: CudaDevice,
    graphs: HashMap<usize, Captured>,
}

impl ChunkGraphs {
    pub fn new(dev: &CudaDevice) -> Self {
        ChunkGraphs { dev: dev.clone(), graphs: HashMap::new() }
    }

    /// Batch sizes recorded so far.
    pub fn batches(&self) -> Vec<usize> {
        let mut b: Vec<usize> = self.graphs.keys().copied().collect();
        b.sort_unstable();
        b
    }

    /// Run `pass` ([m, 2, chunk] f32 audio -> [m, stems, 2, chunk] f32 audio) on `inp` into `o`.
    /// The caller holds [`crate::device::gpu_lock`] (no other thread may synchronise the
    /// context or load kernels while this one records).
    /// The first call for a batch size runs it eagerly, then records it; later calls replay the
    /// recording. An error while recording returns `Err` with the stream out of capture mode
    /// (the caller then runs the pass eagerly).
    pub fn run(&mut self, m: usize, chunk: usize, inp: &[f32], o: &mut [f32], pass: &dyn Fn(&Tensor) -> Result<Tensor>) -> Result<()> {
        if !self.graphs.contains_key(&m) {
            let c = self.record(m, chunk, inp, o, pass)?;
            self.graphs.insert(m, c);
            return Ok(());
        }
        let c = &self.graphs[&m];
        upload_into(&c.input, inp)?;
        c.graph.launch().w()?;
        self.dev.cuda_stream().memcpy_dtoh(&c.output, o).w()
    }

    fn record(&self, m: usize, chunk: usize, inp: &[f32], o: &mut [f32], pass: &dyn Fn(&Tensor) -> Result<Tensor>) -> Result<Captured> {
        let dev = &self.dev;
        let stream = dev.cuda_stream();
        let input = wrap(unsafe { dev.alloc::<f32>(m * 2 * chunk)? }, dev, (m, 2, chunk));
        let mut output = unsafe { dev.alloc::<f32>(o.len())? };
        upload_into(&input, inp)?;
        let run_into = |output: &mut CudaSlice<f32>| -> Result<()> {
            let a = pass(&input)?;
            if a.elem_count() != output.len() || !a.is_contiguous() {
                bail!("chunk graph: the pass returned {:?}, expected {} contiguous values", a.dims(), output.len());
            }
            let (g, l) = a.storage_and_layout();
            let v = view::<f32>(&g, l, output.len())?;
            stream.memcpy_dtod(&v, output).w()
        };
        // Two eager passes: this call's result, and every cache the captured pass relies on.
        // The second pass matters: the first chooses cuDNN algorithms shape by shape and the
        // shared workspace only reaches its final size after all of them; a workspace grown
        // inside the capture would be graph-owned memory that outlives the graph (and breaks
        // the next launch).
        let _cache = dev.enable_cuda_graph_htod_cache();
        for _ in 0..2 {
            run_into(&mut output)?;
        }
        stream.memcpy_dtoh(&output, o).w()?;
        stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL).w()?;
        let recorded = run_into(&mut output);
        // Always leave capture mode, even when the pass failed half-way.
        let ended = stream.end_capture(sys::CUgraphInstantiate_flags(0));
        recorded?;
        let Some(graph) = ended.w()? else { bail!("chunk graph: the capture recorded nothing") };
        graph.upload().w()?;
        Ok(Captured { input, output, graph })
    }
}

impl Drop for ChunkGraphs {
    /// Destroys the graphs, then hands the physical memory their allocations kept reserved
    /// back to the device (unloading a model frees its GPU memory).
    fn drop(&mut self) {
        if self.graphs.is_empty() {
            return;
        }
        let stream = self.dev.cuda_stream();
        let _ = stream.synchronize();
        self.graphs.clear();
        let ctx = stream.context();
        if ctx.bind_to_thread().is_ok() {
            let _ = unsafe { sys::cuDeviceGraphMemTrim(ctx.cu_device()) };
        }
    }
}

/// Copy host samples into a contiguous f32 device tensor's buffer (stream-ordered).
fn upload_into(t: &Tensor, data: &[f32]) -> Result<()> {
    if t.elem_count() != data.len() {
        bail!("chunk graph: {} samples for a buffer of {}", data.len(), t.elem_count());
    }
    let Some(dev) = cuda_device(t.device()) else { bail!("chunk graph: not a CUDA tensor") };
    let stream = dev.cuda_stream();
    stream.context().bind_to_thread().w()?;
    let dst = dev_ptr(t)?;
    // SAFETY: `dst` addresses `data.len()` f32 of `t`, which outlives the copy: the copy is
    // ordered before anything later on the stream, and cuMemcpyHtoDAsync from pageable host
    // memory has read `data` by the time it returns.
    let r = unsafe { sys::cuMemcpyHtoDAsync_v2(dst, data.as_ptr() as *const std::ffi::c_void, std::mem::size_of_val(data), stream.cu_stream()) };
    if r != sys::CUresult::CUDA_SUCCESS {
        bail!("chunk graph: upload failed: {r:?}");
    }
    Ok(())
}

/// Peak bytes held by graph memory nodes since the last [`reset_graph_mem_peak`].
pub fn graph_mem_peak(dev: &CudaDevice) -> Option<u64> {
    let ctx = dev.cuda_stream().context().clone();
    ctx.bind_to_thread().ok()?;
    let mut v: u64 = 0;
    let r = unsafe { sys::cuDeviceGetGraphMemAttribute(ctx.cu_device(), sys::CUgraphMem_attribute::CU_GRAPH_MEM_ATTR_USED_MEM_HIGH, &mut v as *mut u64 as *mut std::ffi::c_void) };
    (r == sys::CUresult::CUDA_SUCCESS).then_some(v)
}

/// Restart [`graph_mem_peak`] from the graph memory in use now.
pub fn reset_graph_mem_peak(dev: &CudaDevice) {
    let ctx = dev.cuda_stream().context().clone();
    if ctx.bind_to_thread().is_err() {
        return;
    }
    let mut zero: u64 = 0;
    let _ = unsafe { sys::cuDeviceSetGraphMemAttribute(ctx.cu_device(), sys::CUgraphMem_attribute::CU_GRAPH_MEM_ATTR_USED_MEM_HIGH, &mut zero as *mut u64 as *mut std::ffi::c_void) };
}
