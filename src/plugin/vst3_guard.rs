//! A VST3 export that puts a thin *bus guard* in front of nice-plug's own VST3 wrapper.
//!
//! # The problem
//!
//! nice-plug 0.4.2's VST3 wrapper (`nice_plug::wrapper::vst3::Wrapper`, exported by
//! `nice_export_vst3!`) only processes audio when the host hands it a buffer for *every* declared
//! output bus. Hosts routinely do not:
//!
//! - pedalboard (JUCE) passes the auxiliary outputs it does not use as buses with
//!   `numChannels = 0` and null `channelBuffers32` (seen with 0.9.26), or fewer output buses than
//!   declared (`numOutputs` smaller than the plugin's bus count);
//! - Studio One greys out the auxiliary outputs of insert effects and passes them empty;
//! - other hosts deactivate buses through `IComponent::activateBus` and then pass them empty.
//!
//! In all of these cases the wrapper's `process` treats the call as a parameter flush (or fails
//! its `buffer_is_valid` check) and leaves the host's main output untouched, so a plugin like
//! "MDX Stems" (stereo main in, stereo main out, six stereo aux outputs) passes its input through
//! unprocessed. The wrapper's auxiliary bus loops also compare `aux_idx > data.numOutputs`, i.e.
//! they may read one `AudioBusBuffers` past the end of the host's array.
//!
//! # Why this route
//!
//! We may not patch or copy nice-plug, and `clap-wrapper` has the same defect. But nice-plug
//! publicly exports its VST3 COM class (`Wrapper<P>`) and the class metadata (`PluginInfo`), and
//! it re-exports the `vst3` binding crate. So this module:
//!
//! 1. exports its own `GetPluginFactory` whose class infos are nice-plug's own `PluginInfo`s
//!    (identical class IDs, names, categories, vendor, version: existing projects and presets keep
//!    working, the state format is nice-plug's because nice-plug still serialises it);
//! 2. creates nice-plug's `Wrapper<P>` in `createInstance`, but hands the host a [`BusGuard`]
//!    instead: a COM object implementing the same interfaces as the wrapper that forwards every
//!    call to it, so the host only ever sees the guard's COM identity;
//! 3. rewrites only `IAudioProcessor::process`: the wrapper always receives *every* declared bus
//!    with its declared channel count (the host's buffers where usable, preallocated scratch
//!    buffers otherwise) and `numInputs`/`numOutputs` equal to the declared counts, so it never
//!    skips processing and never indexes past the arrays it is given.
//!
//! # Usage (in the plugin crate's `lib.rs`, instead of `nice_export_vst3!(A, B)`)
//!
//! Put this file next to the module that exports the plugin (e.g. `src/plugin/vst3_guard.rs` for
//! `src/plugin/mod.rs`) and, in that module:
//!
//! ```ignore
//! mod vst3_guard;
//!
//! nice_export_clap!(MdxStemsMulti, MdxStemsStereo); // CLAP export unchanged
//! vst3_guard::export_guarded_vst3!(MdxStemsMulti, MdxStemsStereo); // replaces nice_export_vst3!
//! ```
//!
//! The macro must be invoked in the module that declares `mod vst3_guard;` (its expansion refers
//! to `self::vst3_guard`). The plugin types must implement `Vst3Plugin` exactly as for
//! `nice_export_vst3!`. Do not also invoke `nice_export_vst3!` (both define `GetPluginFactory`).
//! Dependencies: only `nice-plug` under its own name `nice_plug` (with its default `vst3`
//! feature); the `vst3` bindings are used through nice-plug's re-export.
//!
//! # Ownership
//!
//! - The host owns the factory returned by `GetPluginFactory` (one reference); the factory owns
//!   one [`GuardedClass`] per plugin type (nice-plug's `PluginInfo` plus a constructor function).
//! - The host owns references to each [`BusGuard`]. A guard owns exactly one reference on each of
//!   the eight interface pointers of its inner nice-plug `Wrapper<P>` (obtained once through
//!   `queryInterface` when the guard is created), so the inner object lives exactly as long as
//!   the guard and is released when the host releases the guard for the last time. No pointer to
//!   the inner object is ever given to the host.
//! - A guard owns its [`RtState`]: the `AudioBusBuffers` arrays, channel pointer arrays and
//!   scratch sample buffers used to complete the host's `ProcessData`. They are allocated in
//!   `setupProcessing` (and re-checked in `setActive(true)`, because hosts may change the bus
//!   arrangement in between), never on the audio thread, and handed to `process` without ever
//!   waiting for it ([`RtCell`]): the guard is never left off after `setupProcessing`, even in a
//!   host that reconfigures while a long `process` call runs (it takes the new buffers at its
//!   next call).
//!
//! # Process path rules
//!
//! - `numSamples == 0` (parameter flush), 64-bit processing, no prior `setupProcessing`, or a call
//!   in which the host provides no usable audio bus at all (some hosts flush parameters that way):
//!   the host's `ProcessData` is handed to the wrapper unchanged.
//! - Every declared bus usable as given (right channel count, all channel pointers non-null): the
//!   host's `ProcessData` is handed over unchanged (nothing to fix).
//! - Otherwise a completed copy of the `ProcessData` is handed over. Input buses the host did not
//!   provide are zeroed scratch buffers (with their silence flags set); output buses it did not
//!   provide are scratch buffers whose contents are discarded. A bus the host did provide but with
//!   a different channel count is bridged: the common channels are copied into the scratch input
//!   before, or from the scratch output after, the call; surplus host output channels are zeroed.
//!   A mono host bus bridged to a stereo (or wider) declared bus is treated as mono, not as a
//!   left channel: a mono input feeds every declared channel (the plugin hears the mono source
//!   in the centre, as a stereo track of it would sound), and a mono output gets the average of
//!   the declared channels ((L + R) / 2: what a mono track sounds like, at the level of either
//!   channel for a centred source, never louder than the channels themselves).
//!   The host's own `ProcessData` and `AudioBusBuffers` are never modified (other than the silence
//!   flags of directly used output buses, copied back from the wrapper), so nothing needs
//!   restoring afterwards.
//! - If a call that needs completing is longer than the scratch buffers (a host exceeding its own
//!   `maxSamplesPerBlock`, or announcing more than [`MAX_SCRATCH_BLOCK`] samples), the block is
//!   processed in pieces of at most the scratch length. Input parameter changes and events are
//!   given to the first piece only (nice-plug clamps later offsets to that piece's last sample),
//!   the `ProcessContext` is advanced for later pieces. Output events of later pieces carry
//!   offsets relative to their piece. This is a defensive path for unusual hosts; a call that
//!   needs no completing is never split (it goes through unchanged, whatever its length).
//!
//! The process path does not allocate, lock or block: it only writes preallocated arrays and
//! copies or zeroes samples. See [`RtCell`] for the synchronisation argument.
//!
//! Bus activation (`activateBus`) is forwarded and not tracked: the decision is made per call from
//! the buffers actually passed, which is what matters (hosts disagree on what an inactive bus
//! looks like in `ProcessData`, and some pass buffers for inactive buses anyway).

#![allow(clippy::missing_safety_doc)]
#![allow(clippy::unnecessary_cast)]

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use nice_plug::wrapper::vst3::vst3::Steinberg::Vst::ChannelContext::{
    IInfoListener, IInfoListenerTrait,
};
use nice_plug::wrapper::vst3::vst3::Steinberg::Vst::{
    AudioBusBuffers, BusDirection, BusInfo, CString, CtrlNumber, IAttributeList, IAudioProcessor,
    IAudioProcessorTrait, IComponent, IComponentHandler, IComponentTrait, IEditController, IHostApplication, IHostApplicationTrait,
    IEditControllerTrait, IMidiMapping, IMidiMappingTrait, INoteExpressionController,
    INoteExpressionControllerTrait, IProcessContextRequirements, IProcessContextRequirementsTrait,
    IUnitInfo, IUnitInfoTrait, IoMode, MediaType, NoteExpressionTypeID, NoteExpressionTypeInfo,
    NoteExpressionValue, ParamID, ParamValue, ParameterInfo, ProcessContext, ProcessData,
    ProcessSetup, ProgramListID, ProgramListInfo, RoutingInfo, SpeakerArrangement, String128,
    TChar, UnitID, UnitInfo,
};
use nice_plug::wrapper::vst3::vst3::Steinberg::{
    FIDString, FUnknown, IBStream, IPlugView, IPluginBaseTrait, IPluginFactory, IPluginFactory2,
    IPluginFactory2Trait, IPluginFactory3, IPluginFactory3Trait, IPluginFactoryTrait, PClassInfo,
    PClassInfo2, PClassInfoW, PFactoryInfo, TBool, TUID, int16, int32, kInvalidArgument,
    kResultFalse, kResultOk, tresult, uint32,
};
use nice_plug::wrapper::vst3::vst3::{Class, ComPtr, ComRef, ComWrapper};
use nice_plug::wrapper::vst3::{PluginInfo, Vst3Plugin, Wrapper};

use nice_plug::wrapper::vst3::vst3::Steinberg::Vst::BusDirections_::{kInput, kOutput};
use nice_plug::wrapper::vst3::vst3::Steinberg::Vst::MediaTypes_::kAudio;
use nice_plug::wrapper::vst3::vst3::Steinberg::Vst::ProcessContext_::StatesAndFlags_::{
    kProjectTimeMusicValid, kTempoValid,
};
use nice_plug::wrapper::vst3::vst3::Steinberg::Vst::SymbolicSampleSizes_::kSample32;

const K_AUDIO: MediaType = kAudio as MediaType;
const K_INPUT: BusDirection = kInput as BusDirection;
const K_OUTPUT: BusDirection = kOutput as BusDirection;
const K_SAMPLE_32: int32 = kSample32 as int32;

/// Upper bound for the scratch buffers' length per channel (samples). A host announcing a larger
/// `maxSamplesPerBlock` (some offline renderers do) gets scratch buffers of this size, and calls
/// that need completing and are longer than this are processed in pieces. 131072 samples cost
/// 512 KiB per declared channel (8 MiB for a 2 in / 14 out plugin).
const MAX_SCRATCH_BLOCK: usize = 1 << 17;

// ------------------------------------------------------------------------------------------------
// Export macro
// ------------------------------------------------------------------------------------------------

/// Exports the VST3 entry points for one or more nice-plug plugin types, each wrapped in a
/// [`BusGuard`]. Replacement for `nice_export_vst3!`; see the module documentation for usage.
/// Invoke it in the module that declares `mod vst3_guard;`.
///
/// Generates `GetPluginFactory` and the platform's module entry/exit functions (`ModuleEntry` /
/// `ModuleExit` on Linux and other non-Apple Unixes, `bundleEntry` / `bundleExit` on macOS,
/// `InitDll` / `ExitDll` on Windows). The entry functions set up nice-plug's logger for every
/// exported type, as nice-plug's own export does. The first type's vendor information is used for
/// the factory info.
macro_rules! export_guarded_vst3 {
    ($($plugin_ty:ty),+ $(,)?) => {
        /// VST3 factory entry point (bus-guarded nice-plug VST3 wrapper).
        #[unsafe(no_mangle)]
        pub extern "system" fn GetPluginFactory() -> *mut ::std::ffi::c_void {
            self::vst3_guard::new_factory(::std::vec![
                $(self::vst3_guard::GuardedClass::of::<$plugin_ty>()),+
            ])
        }

        #[allow(missing_docs)]
        #[unsafe(no_mangle)]
        #[cfg(all(target_family = "unix", not(target_os = "macos")))]
        pub extern "C" fn ModuleEntry(_library_handle: *mut ::std::ffi::c_void) -> bool {
            $(::nice_plug::wrapper::setup_logger::<$plugin_ty>();)+
            true
        }

        #[allow(missing_docs)]
        #[unsafe(no_mangle)]
        #[cfg(all(target_family = "unix", not(target_os = "macos")))]
        pub extern "C" fn ModuleExit() -> bool {
            true
        }

        #[allow(missing_docs)]
        #[unsafe(no_mangle)]
        #[cfg(target_os = "macos")]
        pub extern "C" fn bundleEntry(_bundle_ref: *mut ::std::ffi::c_void) -> bool {
            $(::nice_plug::wrapper::setup_logger::<$plugin_ty>();)+
            true
        }

        #[allow(missing_docs)]
        #[unsafe(no_mangle)]
        #[cfg(target_os = "macos")]
        pub extern "C" fn bundleExit() -> bool {
            true
        }

        #[allow(missing_docs)]
        #[unsafe(no_mangle)]
        #[cfg(target_os = "windows")]
        pub extern "system" fn InitDll() -> bool {
            $(::nice_plug::wrapper::setup_logger::<$plugin_ty>();)+
            true
        }

        #[allow(missing_docs)]
        #[unsafe(no_mangle)]
        #[cfg(target_os = "windows")]
        pub extern "system" fn ExitDll() -> bool {
            true
        }
    };
}
#[allow(unused_imports)]
pub(crate) use export_guarded_vst3;

// ------------------------------------------------------------------------------------------------
// Factory
// ------------------------------------------------------------------------------------------------

/// One exported plugin class: nice-plug's metadata for it and a constructor for nice-plug's
/// VST3 object. Type-erased so the factory needs no macro-generated code.
pub struct GuardedClass {
    info: PluginInfo,
    create_inner: fn() -> Option<ComPtr<FUnknown>>,
}

impl GuardedClass {
    /// The class for plugin type `P`, with exactly the metadata nice-plug's own export uses.
    pub fn of<P: Vst3Plugin>() -> Self {
        GuardedClass {
            info: PluginInfo::for_plugin::<P>(),
            create_inner: create_nice_plug_wrapper::<P>,
        }
    }
}

/// Creates nice-plug's VST3 object for `P` and returns an owning pointer to its `FUnknown`.
fn create_nice_plug_wrapper<P: Vst3Plugin>() -> Option<ComPtr<FUnknown>> {
    // The `ComWrapper` is dropped at the end of this function; the returned `ComPtr` holds the
    // only reference.
    ComWrapper::new(Wrapper::<P>::new()).to_com_ptr::<FUnknown>()
}

/// Builds the factory object and returns it as an owned `IPluginFactory*` for the host. Called by
/// the `GetPluginFactory` generated by [`export_guarded_vst3!`].
#[doc(hidden)]
pub fn new_factory(classes: Vec<GuardedClass>) -> *mut c_void {
    debug_assert!(!classes.is_empty());
    debug_assert!(
        classes
            .iter()
            .enumerate()
            .all(|(i, a)| classes[..i].iter().all(|b| a.info.cid != b.info.cid)),
        "duplicate VST3 class IDs in export_guarded_vst3!()"
    );

    match ComWrapper::new(GuardFactory { classes }).to_com_ptr::<IPluginFactory>() {
        Some(factory) => factory.into_raw() as *mut c_void,
        None => ptr::null_mut(),
    }
}

/// The plugin factory: `IPluginFactory`, `IPluginFactory2` and `IPluginFactory3`, answering with
/// nice-plug's `PluginInfo` for every class and creating guarded instances.
pub struct GuardFactory {
    classes: Vec<GuardedClass>,
}

impl Class for GuardFactory {
    type Interfaces = (IPluginFactory, IPluginFactory2, IPluginFactory3);
}

impl GuardFactory {
    fn class(&self, index: int32) -> Option<&GuardedClass> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.classes.get(i))
    }
}

impl IPluginFactoryTrait for GuardFactory {
    unsafe fn getFactoryInfo(&self, info: *mut PFactoryInfo) -> tresult {
        if info.is_null() {
            return kInvalidArgument;
        }
        // SAFETY: non-null, and the host passes a writable `PFactoryInfo`.
        unsafe { *info = self.classes[0].info.create_factory_info() };
        kResultOk
    }

    unsafe fn countClasses(&self) -> int32 {
        self.classes.len() as int32
    }

    unsafe fn getClassInfo(&self, index: int32, info: *mut PClassInfo) -> tresult {
        match self.class(index) {
            Some(class) if !info.is_null() => {
                // SAFETY: non-null, and the host passes a writable `PClassInfo`.
                unsafe { *info = class.info.create_class_info() };
                kResultOk
            }
            _ => kInvalidArgument,
        }
    }

    unsafe fn createInstance(
        &self,
        cid: FIDString,
        iid: FIDString,
        obj: *mut *mut c_void,
    ) -> tresult {
        if cid.is_null() || iid.is_null() || obj.is_null() {
            return kInvalidArgument;
        }
        // SAFETY: `obj` is non-null and points to the host's out-pointer.
        unsafe { *obj = ptr::null_mut() };

        // SAFETY: VST3 class and interface IDs are 16-byte `TUID`s.
        let cid = unsafe { &*(cid as *const [u8; 16]) };
        let Some(class) = self.classes.iter().find(|c| c.info.cid == cid) else {
            return kInvalidArgument;
        };

        let Some(guard) = (class.create_inner)().and_then(BusGuard::new) else {
            return kResultFalse;
        };
        let guard = ComWrapper::new(guard);
        let Some(unknown) = guard.as_com_ref::<FUnknown>() else {
            return kResultFalse;
        };
        let unknown = unknown.as_ptr();
        // SAFETY: `unknown` is a live `FUnknown*` of the guard (kept alive by `guard` during this
        // call). `queryInterface` stores an owning pointer in `*obj` on success; the `ComWrapper`
        // reference is dropped afterwards, so on success the host's pointer is the only
        // reference, and on failure the guard (and with it the inner wrapper) is freed.
        unsafe { ((*(*unknown).vtbl).queryInterface)(unknown, iid as *const TUID, obj) }
    }
}

impl IPluginFactory2Trait for GuardFactory {
    unsafe fn getClassInfo2(&self, index: int32, info: *mut PClassInfo2) -> tresult {
        match self.class(index) {
            Some(class) if !info.is_null() => {
                // SAFETY: non-null, and the host passes a writable `PClassInfo2`.
                unsafe { *info = class.info.create_class_info_2() };
                kResultOk
            }
            _ => kInvalidArgument,
        }
    }
}

impl IPluginFactory3Trait for GuardFactory {
    unsafe fn getClassInfoUnicode(&self, index: int32, info: *mut PClassInfoW) -> tresult {
        match self.class(index) {
            Some(class) if !info.is_null() => {
                // SAFETY: non-null, and the host passes a writable `PClassInfoW`.
                unsafe { *info = class.info.create_class_info_unicode() };
                kResultOk
            }
            _ => kInvalidArgument,
        }
    }

    unsafe fn setHostContext(&self, _context: *mut FUnknown) -> tresult {
        kResultOk
    }
}

// ------------------------------------------------------------------------------------------------
// The guard object
// ------------------------------------------------------------------------------------------------

/// The COM object the host sees for each plugin instance.
///
/// Implements the interfaces nice-plug's `Wrapper` implements (same list, same order as its
/// `Class::Interfaces`) and forwards every call to the inner wrapper's corresponding interface,
/// except that `IAudioProcessor::process` completes the host's `ProcessData` first (see the module
/// documentation), and that `setupProcessing` / `setActive(true)` additionally (re)allocate the
/// buffers for that ([`ProcessGuard`]).
pub struct BusGuard {
    // Owning interface pointers into the inner nice-plug `Wrapper<P>` (one reference each; the
    // `IComponent` and `IAudioProcessor` ones are in `audio`).
    controller: ComPtr<IEditController>,
    midi_mapping: ComPtr<IMidiMapping>,
    note_expressions: ComPtr<INoteExpressionController>,
    context_requirements: ComPtr<IProcessContextRequirements>,
    unit_info: ComPtr<IUnitInfo>,
    info_listener: ComPtr<IInfoListener>,

    /// The inner `IComponent` and `IAudioProcessor`, and the buffers for completing
    /// `ProcessData`, shared between the setup calls and `process`.
    audio: ProcessGuard,
}

impl Class for BusGuard {
    type Interfaces = (
        IComponent,
        IEditController,
        IAudioProcessor,
        IMidiMapping,
        INoteExpressionController,
        IProcessContextRequirements,
        IUnitInfo,
        IInfoListener,
    );
}

impl BusGuard {
    /// Wraps an inner VST3 object; queries each forwarded interface once. Returns `None` if the
    /// inner object lacks one of them (nice-plug's `Wrapper` implements all of them).
    fn new(inner: ComPtr<FUnknown>) -> Option<Self> {
        Some(BusGuard {
            controller: inner.cast()?,
            midi_mapping: inner.cast()?,
            note_expressions: inner.cast()?,
            context_requirements: inner.cast()?,
            unit_info: inner.cast()?,
            info_listener: inner.cast()?,
            audio: ProcessGuard::new(inner.cast()?, inner.cast()?),
        })
        // `inner` is released here; the guard keeps its own references.
    }
}

/// Everything the guard does besides forwarding: the inner object's `IComponent` (its declared
/// buses, `setActive`) and `IAudioProcessor` (`setupProcessing`, `process`), and the process
/// buffers ([`RtCell`]). Driven by [`BusGuard`], and directly by the unit tests.
struct ProcessGuard {
    component: ComPtr<IComponent>,
    processor: ComPtr<IAudioProcessor>,
    rt: RtCell,
}

impl ProcessGuard {
    fn new(component: ComPtr<IComponent>, processor: ComPtr<IAudioProcessor>) -> Self {
        ProcessGuard { component, processor, rt: RtCell::new() }
    }

    /// The declared channel count of every audio bus in one direction, as the inner wrapper
    /// currently reports it (this follows `setBusArrangements`). Main thread only.
    fn declared_buses(&self, dir: BusDirection) -> Vec<usize> {
        // SAFETY: plain queries on the live inner object; `info` is a valid out-parameter.
        unsafe {
            let count = self.component.getBusCount(K_AUDIO, dir).max(0);
            (0..count)
                .map(|index| {
                    let mut info: BusInfo = std::mem::zeroed();
                    if self.component.getBusInfo(K_AUDIO, dir, index, &mut info) == kResultOk {
                        info.channelCount.max(0) as usize
                    } else {
                        0
                    }
                })
                .collect()
        }
    }

    /// (Re)builds the process buffers for the current bus layout and hands them to `process`,
    /// which uses them from its next call on. `max_block` is the new `maxSamplesPerBlock` from
    /// `setupProcessing`, or `None` to keep the last one. Never called on the audio thread, and
    /// never waits for it (see [`RtCell`]).
    fn prepare(&self, max_block: Option<usize>) {
        let inputs = self.declared_buses(K_INPUT);
        let outputs = self.declared_buses(K_OUTPUT);
        self.rt.prepare(inputs, outputs, max_block);
    }

    unsafe fn setup_processing(&self, setup: *mut ProcessSetup) -> tresult {
        let result = unsafe { self.processor.setupProcessing(setup) };
        if result == kResultOk && !setup.is_null() {
            // SAFETY: non-null; the host passes a valid `ProcessSetup`.
            let max_block = unsafe { (*setup).maxSamplesPerBlock }.max(0) as usize;
            self.prepare(Some(max_block.min(MAX_SCRATCH_BLOCK)));
        }
        result
    }

    unsafe fn set_active(&self, state: TBool) -> tresult {
        if state != 0 {
            // The host may have changed the bus arrangement since `setupProcessing`.
            self.prepare(None);
        } else {
            self.rt.collect();
        }
        unsafe { self.component.setActive(state) }
    }

    unsafe fn process(&self, data: *mut ProcessData) -> tresult {
        // Everything that needs no fixing goes to the wrapper exactly as the host sent it.
        if data.is_null() {
            return unsafe { self.processor.process(data) };
        }
        // SAFETY: non-null; the host's `ProcessData` is valid for the duration of this call. We
        // only read it (and write silence flags of its output buses, see `complete_and_process`).
        let host = unsafe { &*data };
        if host.numSamples <= 0 || host.symbolicSampleSize != K_SAMPLE_32 {
            return unsafe { self.processor.process(data) };
        }

        // Non-blocking: `process` running concurrently with itself, or with the very moment the
        // setup side hands new buffers over (both only in hosts that break VST3's threading
        // rules), passes this one call through and counts it.
        let Some(_access) = self.rt.try_lock_for_process() else {
            self.rt.unguarded.fetch_add(1, Ordering::Relaxed);
            return unsafe { self.processor.process(data) };
        };
        // SAFETY: `_access` proves exclusive access to the state (see `RtCell`).
        if !unsafe { self.rt.install() } {
            self.rt.unguarded.fetch_add(1, Ordering::Relaxed);
            return unsafe { self.processor.process(data) };
        }
        // SAFETY: as above.
        let Some(state) = (unsafe { &mut *self.rt.state.get() }).as_mut() else {
            // No `setupProcessing` yet.
            return unsafe { self.processor.process(data) };
        };

        // SAFETY: `host` is the host's valid `ProcessData` (see above).
        match unsafe { state.classify(host) } {
            Plan::Unchanged => unsafe { self.processor.process(data) },
            Plan::Complete => unsafe { state.complete_and_process(data, &self.processor) },
        }
    }
}

// --- IPluginBase (shared base of IComponent and IEditController) --------------------------------

/// The host's name as it gives it (`IHostApplication::getName`), from the first instance the
/// host initialises; `None` before that or when the host does not say.
pub fn host_name() -> Option<&'static str> {
    HOST_NAME.get().map(String::as_str)
}

static HOST_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

impl IPluginBaseTrait for BusGuard {
    unsafe fn initialize(&self, context: *mut FUnknown) -> tresult {
        // SAFETY: `context` is the host's context object (or null), valid during this call.
        if let Some(app) = unsafe { ComRef::from_raw(context) }.and_then(|c| c.cast::<IHostApplication>()) {
            let mut name: String128 = [0; 128];
            // SAFETY: `name` is the String128 the method fills.
            if unsafe { app.getName(&mut name) } == kResultOk {
                let len = name.iter().position(|c| *c == 0).unwrap_or(name.len());
                let _ = HOST_NAME.set(String::from_utf16_lossy(&name[..len]));
            }
        }
        unsafe { self.audio.component.initialize(context) }
    }

    unsafe fn terminate(&self) -> tresult {
        unsafe { self.audio.component.terminate() }
    }
}

// --- IComponent ---------------------------------------------------------------------------------

impl IComponentTrait for BusGuard {
    unsafe fn getControllerClassId(&self, class_id: *mut TUID) -> tresult {
        unsafe { self.audio.component.getControllerClassId(class_id) }
    }

    unsafe fn setIoMode(&self, mode: IoMode) -> tresult {
        unsafe { self.audio.component.setIoMode(mode) }
    }

    unsafe fn getBusCount(&self, media_type: MediaType, dir: BusDirection) -> int32 {
        unsafe { self.audio.component.getBusCount(media_type, dir) }
    }

    unsafe fn getBusInfo(
        &self,
        media_type: MediaType,
        dir: BusDirection,
        index: int32,
        bus: *mut BusInfo,
    ) -> tresult {
        unsafe { self.audio.component.getBusInfo(media_type, dir, index, bus) }
    }

    unsafe fn getRoutingInfo(
        &self,
        in_info: *mut RoutingInfo,
        out_info: *mut RoutingInfo,
    ) -> tresult {
        unsafe { self.audio.component.getRoutingInfo(in_info, out_info) }
    }

    unsafe fn activateBus(
        &self,
        media_type: MediaType,
        dir: BusDirection,
        index: int32,
        state: TBool,
    ) -> tresult {
        unsafe { self.audio.component.activateBus(media_type, dir, index, state) }
    }

    unsafe fn setActive(&self, state: TBool) -> tresult {
        unsafe { self.audio.set_active(state) }
    }

    unsafe fn setState(&self, state: *mut IBStream) -> tresult {
        unsafe { IComponentTrait::setState(&self.audio.component, state) }
    }

    unsafe fn getState(&self, state: *mut IBStream) -> tresult {
        unsafe { IComponentTrait::getState(&self.audio.component, state) }
    }
}

// --- IEditController ----------------------------------------------------------------------------

impl IEditControllerTrait for BusGuard {
    unsafe fn setComponentState(&self, state: *mut IBStream) -> tresult {
        unsafe { self.controller.setComponentState(state) }
    }

    unsafe fn setState(&self, state: *mut IBStream) -> tresult {
        unsafe { IEditControllerTrait::setState(&self.controller, state) }
    }

    unsafe fn getState(&self, state: *mut IBStream) -> tresult {
        unsafe { IEditControllerTrait::getState(&self.controller, state) }
    }

    unsafe fn getParameterCount(&self) -> int32 {
        unsafe { self.controller.getParameterCount() }
    }

    unsafe fn getParameterInfo(&self, param_index: int32, info: *mut ParameterInfo) -> tresult {
        unsafe { self.controller.getParameterInfo(param_index, info) }
    }

    unsafe fn getParamStringByValue(
        &self,
        id: ParamID,
        value_normalized: ParamValue,
        string: *mut String128,
    ) -> tresult {
        unsafe {
            self.controller
                .getParamStringByValue(id, value_normalized, string)
        }
    }

    unsafe fn getParamValueByString(
        &self,
        id: ParamID,
        string: *mut TChar,
        value_normalized: *mut ParamValue,
    ) -> tresult {
        unsafe {
            self.controller
                .getParamValueByString(id, string, value_normalized)
        }
    }

    unsafe fn normalizedParamToPlain(
        &self,
        id: ParamID,
        value_normalized: ParamValue,
    ) -> ParamValue {
        unsafe { self.controller.normalizedParamToPlain(id, value_normalized) }
    }

    unsafe fn plainParamToNormalized(&self, id: ParamID, plain_value: ParamValue) -> ParamValue {
        unsafe { self.controller.plainParamToNormalized(id, plain_value) }
    }

    unsafe fn getParamNormalized(&self, id: ParamID) -> ParamValue {
        unsafe { self.controller.getParamNormalized(id) }
    }

    unsafe fn setParamNormalized(&self, id: ParamID, value: ParamValue) -> tresult {
        unsafe { self.controller.setParamNormalized(id, value) }
    }

    unsafe fn setComponentHandler(&self, handler: *mut IComponentHandler) -> tresult {
        unsafe { self.controller.setComponentHandler(handler) }
    }

    unsafe fn createView(&self, name: FIDString) -> *mut IPlugView {
        // The view is nice-plug's own object; it only refers to the inner wrapper's state.
        unsafe { self.controller.createView(name) }
    }
}

// --- IAudioProcessor ----------------------------------------------------------------------------

impl IAudioProcessorTrait for BusGuard {
    unsafe fn setBusArrangements(
        &self,
        inputs: *mut SpeakerArrangement,
        num_ins: int32,
        outputs: *mut SpeakerArrangement,
        num_outs: int32,
    ) -> tresult {
        // The resulting layout is picked up by `prepare` in `setupProcessing`/`setActive(true)`.
        unsafe {
            self.audio.processor
                .setBusArrangements(inputs, num_ins, outputs, num_outs)
        }
    }

    unsafe fn getBusArrangement(
        &self,
        dir: BusDirection,
        index: int32,
        arr: *mut SpeakerArrangement,
    ) -> tresult {
        unsafe { self.audio.processor.getBusArrangement(dir, index, arr) }
    }

    unsafe fn canProcessSampleSize(&self, symbolic_sample_size: int32) -> tresult {
        unsafe { self.audio.processor.canProcessSampleSize(symbolic_sample_size) }
    }

    unsafe fn getLatencySamples(&self) -> uint32 {
        unsafe { self.audio.processor.getLatencySamples() }
    }

    unsafe fn setupProcessing(&self, setup: *mut ProcessSetup) -> tresult {
        unsafe { self.audio.setup_processing(setup) }
    }

    unsafe fn setProcessing(&self, state: TBool) -> tresult {
        unsafe { self.audio.processor.setProcessing(state) }
    }

    unsafe fn process(&self, data: *mut ProcessData) -> tresult {
        unsafe { self.audio.process(data) }
    }

    unsafe fn getTailSamples(&self) -> uint32 {
        unsafe { self.audio.processor.getTailSamples() }
    }
}

// --- the remaining interfaces: plain forwarding -------------------------------------------------

impl IMidiMappingTrait for BusGuard {
    unsafe fn getMidiControllerAssignment(
        &self,
        bus_index: int32,
        channel: int16,
        midi_controller_number: CtrlNumber,
        id: *mut ParamID,
    ) -> tresult {
        unsafe {
            self.midi_mapping.getMidiControllerAssignment(
                bus_index,
                channel,
                midi_controller_number,
                id,
            )
        }
    }
}

impl INoteExpressionControllerTrait for BusGuard {
    unsafe fn getNoteExpressionCount(&self, bus_index: int32, channel: int16) -> int32 {
        unsafe {
            self.note_expressions
                .getNoteExpressionCount(bus_index, channel)
        }
    }

    unsafe fn getNoteExpressionInfo(
        &self,
        bus_index: int32,
        channel: int16,
        note_expression_index: int32,
        info: *mut NoteExpressionTypeInfo,
    ) -> tresult {
        unsafe {
            self.note_expressions.getNoteExpressionInfo(
                bus_index,
                channel,
                note_expression_index,
                info,
            )
        }
    }

    unsafe fn getNoteExpressionStringByValue(
        &self,
        bus_index: int32,
        channel: int16,
        id: NoteExpressionTypeID,
        value_normalized: NoteExpressionValue,
        string: *mut String128,
    ) -> tresult {
        unsafe {
            self.note_expressions.getNoteExpressionStringByValue(
                bus_index,
                channel,
                id,
                value_normalized,
                string,
            )
        }
    }

    unsafe fn getNoteExpressionValueByString(
        &self,
        bus_index: int32,
        channel: int16,
        id: NoteExpressionTypeID,
        string: *const TChar,
        value_normalized: *mut NoteExpressionValue,
    ) -> tresult {
        unsafe {
            self.note_expressions.getNoteExpressionValueByString(
                bus_index,
                channel,
                id,
                string,
                value_normalized,
            )
        }
    }
}

impl IProcessContextRequirementsTrait for BusGuard {
    unsafe fn getProcessContextRequirements(&self) -> uint32 {
        unsafe { self.context_requirements.getProcessContextRequirements() }
    }
}

impl IUnitInfoTrait for BusGuard {
    unsafe fn getUnitCount(&self) -> int32 {
        unsafe { self.unit_info.getUnitCount() }
    }

    unsafe fn getUnitInfo(&self, unit_index: int32, info: *mut UnitInfo) -> tresult {
        unsafe { self.unit_info.getUnitInfo(unit_index, info) }
    }

    unsafe fn getProgramListCount(&self) -> int32 {
        unsafe { self.unit_info.getProgramListCount() }
    }

    unsafe fn getProgramListInfo(&self, list_index: int32, info: *mut ProgramListInfo) -> tresult {
        unsafe { self.unit_info.getProgramListInfo(list_index, info) }
    }

    unsafe fn getProgramName(
        &self,
        list_id: ProgramListID,
        program_index: int32,
        name: *mut String128,
    ) -> tresult {
        unsafe { self.unit_info.getProgramName(list_id, program_index, name) }
    }

    unsafe fn getProgramInfo(
        &self,
        list_id: ProgramListID,
        program_index: int32,
        attribute_id: CString,
        attribute_value: *mut String128,
    ) -> tresult {
        unsafe {
            self.unit_info
                .getProgramInfo(list_id, program_index, attribute_id, attribute_value)
        }
    }

    unsafe fn hasProgramPitchNames(&self, list_id: ProgramListID, program_index: int32) -> tresult {
        unsafe { self.unit_info.hasProgramPitchNames(list_id, program_index) }
    }

    unsafe fn getProgramPitchName(
        &self,
        list_id: ProgramListID,
        program_index: int32,
        midi_pitch: int16,
        name: *mut String128,
    ) -> tresult {
        unsafe {
            self.unit_info
                .getProgramPitchName(list_id, program_index, midi_pitch, name)
        }
    }

    unsafe fn getSelectedUnit(&self) -> UnitID {
        unsafe { self.unit_info.getSelectedUnit() }
    }

    unsafe fn selectUnit(&self, unit_id: UnitID) -> tresult {
        unsafe { self.unit_info.selectUnit(unit_id) }
    }

    unsafe fn getUnitByBus(
        &self,
        media_type: MediaType,
        dir: BusDirection,
        bus_index: int32,
        channel: int32,
        unit_id: *mut UnitID,
    ) -> tresult {
        unsafe {
            self.unit_info
                .getUnitByBus(media_type, dir, bus_index, channel, unit_id)
        }
    }

    unsafe fn setUnitProgramData(
        &self,
        list_or_unit_id: int32,
        program_index: int32,
        data: *mut IBStream,
    ) -> tresult {
        unsafe {
            self.unit_info
                .setUnitProgramData(list_or_unit_id, program_index, data)
        }
    }
}

impl IInfoListenerTrait for BusGuard {
    unsafe fn setChannelContextInfos(&self, list: *mut IAttributeList) -> tresult {
        unsafe { self.info_listener.setChannelContextInfos(list) }
    }
}

// ------------------------------------------------------------------------------------------------
// Real-time state
// ------------------------------------------------------------------------------------------------

/// The process buffers plus the flags that make sharing them between the host's setup thread and
/// its audio thread sound.
///
/// # Safety argument
///
/// `state` (the buffers `process` uses) is only ever accessed through a `&mut` obtained while
/// holding `busy`, and only by `process` (and by `Drop`, which has `&mut self`): `process` takes
/// `busy` with a single `compare_exchange` and, if that fails (a host calling `process`
/// concurrently with itself), hands the host's data through unchanged instead of waiting.
///
/// The setup side (`setupProcessing`, `setActive`: main thread) never touches `state` and never
/// waits for `process`. It allocates new buffers on its own thread and hands them over through
/// `next`, a second slot guarded by `next_busy` (acquire on entry, release on exit, so the setup
/// thread's writes happen-before the audio thread's reads and vice versa), setting `has_next`:
///
/// - `process` (holding `busy`) sees `has_next`, takes `next_busy` with one `compare_exchange`
///   and swaps `state` and `next`: it uses the new buffers from this call on, and the old ones
///   wait in `next` for the setup side, which frees them on its next call (or `Drop` does). The
///   audio thread only moves the two values (no allocation, no free, no wait).
/// - The setup side holds `next_busy` only to put buffers into `next` or take the old ones out
///   (a move, no allocation or free inside), and `process` holds it only for the swap, so
///   either waits at most for the other's move. The setup side spins for that moment; the audio
///   thread never does: if `next_busy` is taken (the setup side handing over right now, which a
///   compliant host never lets happen during `process`), that one call passes through unchanged.
///
/// So the guard is never left off: in a compliant host every call after `setupProcessing` is
/// guarded; a host that reconfigures while a (long) `process` call runs gets the new buffers
/// at its next call. Calls passed through because of such contention are counted and logged by
/// the setup side.
struct RtCell {
    busy: AtomicBool,
    /// The buffers `process` uses; `None` before the first hand-over (no `setupProcessing`
    /// yet: calls pass through).
    state: UnsafeCell<Option<RtState>>,
    next_busy: AtomicBool,
    /// `next` holds buffers `process` has not installed yet.
    has_next: AtomicBool,
    /// New buffers on their way to `process` (while `has_next`), or the buffers they replaced,
    /// waiting for the setup side to free them.
    next: UnsafeCell<Option<RtState>>,
    /// Setup side only: the layout and block size of the buffers last handed over.
    handed: std::sync::Mutex<Option<Layout>>,
    /// Calls passed through unguarded because of contention (see above); the setup side logs
    /// and resets it.
    unguarded: AtomicU32,
}

/// The buses and block size a set of process buffers is built for.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Layout {
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    max_block: usize,
}

/// Proof of exclusive access to what a flag guards; releases the flag when dropped.
struct RtAccess<'a>(&'a AtomicBool);

impl Drop for RtAccess<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// One attempt to take `flag`, never waits.
fn try_take(flag: &AtomicBool) -> Option<RtAccess<'_>> {
    flag.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .ok()
        .map(|_| RtAccess(flag))
}

impl RtCell {
    fn new() -> Self {
        RtCell {
            busy: AtomicBool::new(false),
            state: UnsafeCell::new(None),
            next_busy: AtomicBool::new(false),
            has_next: AtomicBool::new(false),
            next: UnsafeCell::new(None),
            handed: std::sync::Mutex::new(None),
            unguarded: AtomicU32::new(0),
        }
    }

    /// Audio thread: one attempt, never waits.
    fn try_lock_for_process(&self) -> Option<RtAccess<'_>> {
        try_take(&self.busy)
    }

    /// Setup side: take `next_busy`, spinning for the moment `process` may hold it (a swap).
    fn lock_next(&self) -> RtAccess<'_> {
        loop {
            if let Some(access) = try_take(&self.next_busy) {
                return access;
            }
            std::thread::yield_now();
        }
    }

    /// Audio thread, holding `busy`: start using the buffers handed over, if any. False if the
    /// setup side is handing some over at this very moment (the call should pass through).
    ///
    /// SAFETY: the caller holds `busy`.
    unsafe fn install(&self) -> bool {
        if !self.has_next.load(Ordering::Acquire) {
            return true;
        }
        let Some(_next) = try_take(&self.next_busy) else {
            return false;
        };
        if self.has_next.load(Ordering::Relaxed) {
            // SAFETY: `busy` guards `state`, `next_busy` guards `next`; a swap moves the two
            // values (no allocation or free).
            unsafe { std::mem::swap(&mut *self.state.get(), &mut *self.next.get()) };
            self.has_next.store(false, Ordering::Relaxed);
        }
        true
    }

    /// Setup side: hand buffers for `inputs`/`outputs` and `max_block` (`None`: the last one)
    /// to `process`, unless those handed over last already fit. Never waits for `process`.
    fn prepare(&self, inputs: Vec<usize>, outputs: Vec<usize>, max_block: Option<usize>) {
        let mut handed = self.handed.lock().unwrap_or_else(|p| p.into_inner());
        let Some(max_block) = max_block.or_else(|| handed.as_ref().map(|l| l.max_block)) else {
            return; // no `setupProcessing` yet: stay in pass-through mode
        };
        if max_block == 0 {
            return;
        }
        let layout = Layout { inputs, outputs, max_block };
        if handed.as_ref() == Some(&layout) {
            drop(handed);
            self.collect();
            return;
        }
        // Allocated here, on the setup thread, before the hand-over.
        let fresh = RtState::new(&layout.inputs, &layout.outputs, max_block);
        let old = {
            let _next = self.lock_next();
            // SAFETY: `next_busy` is held.
            let old = unsafe { (*self.next.get()).replace(fresh) };
            self.has_next.store(true, Ordering::Release);
            old
        };
        // Buffers `process` never installed, or ones it replaced: freed here.
        drop(old);
        *handed = Some(layout);
        drop(handed);
        self.report();
    }

    /// Setup side: free buffers `process` has replaced, and log calls it passed through.
    fn collect(&self) {
        let old = {
            let _next = self.lock_next();
            if self.has_next.load(Ordering::Relaxed) {
                None
            } else {
                // SAFETY: `next_busy` is held.
                unsafe { (*self.next.get()).take() }
            }
        };
        drop(old);
        self.report();
    }

    fn report(&self) {
        let n = self.unguarded.swap(0, Ordering::Relaxed);
        if n > 0 {
            nice_plug::nice_log!(
                "VST3 bus guard: {n} process calls passed through unguarded (the host called process concurrently with itself or with setupProcessing)"
            );
        }
    }
}

/// What `process` does with one host call.
enum Plan {
    /// Hand the host's `ProcessData` over as it is.
    Unchanged,
    /// Hand over a completed copy.
    Complete,
}

/// How one declared bus is fed in the current call.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The host's bus as given (declared channel count, all channel pointers non-null).
    Direct,
    /// The host gave the bus with a different channel count (or some null channel pointers):
    /// scratch buffer, bridged channel by channel.
    Bridged,
    /// The host gave nothing usable: scratch buffer only.
    Scratch,
}

/// One declared audio bus.
struct BusSlot {
    /// Declared channel count.
    channels: usize,
    /// The channel pointer array handed to the wrapper (`channels` entries). Points either into
    /// the host's buffers (offset by the current piece) or into `scratch`.
    channel_ptrs: Box<[*mut f32]>,
    /// `channels * max_block` samples, channel after channel.
    scratch: Box<[f32]>,
    /// Per call: how this bus is fed, and the host's bus for `Direct`/`Bridged`.
    source: Source,
    host: *mut AudioBusBuffers,
}

impl BusSlot {
    fn new(channels: usize, max_block: usize) -> Self {
        BusSlot {
            channels,
            channel_ptrs: vec![ptr::null_mut(); channels].into_boxed_slice(),
            scratch: vec![0.0; channels * max_block].into_boxed_slice(),
            source: Source::Scratch,
            host: ptr::null_mut(),
        }
    }

    /// Decides how to feed this bus from the host's bus array.
    ///
    /// SAFETY: `host_buses` is null or points to `host_count` valid `AudioBusBuffers`, each of
    /// which has null or valid `channelBuffers32` with `numChannels` entries.
    unsafe fn classify(
        &mut self,
        index: usize,
        host_buses: *mut AudioBusBuffers,
        host_count: int32,
    ) {
        self.source = Source::Scratch;
        self.host = ptr::null_mut();
        if host_buses.is_null() || index >= host_count.max(0) as usize {
            return;
        }
        let bus = unsafe { host_buses.add(index) };
        let (num_channels, ptrs) =
            unsafe { ((*bus).numChannels, (*bus).__field0.channelBuffers32) };
        if num_channels <= 0 || ptrs.is_null() {
            return;
        }
        self.host = bus;
        let num_channels = num_channels as usize;
        let all_present = (0..num_channels).all(|c| unsafe { !(*ptrs.add(c)).is_null() });
        self.source = if num_channels == self.channels && all_present {
            Source::Direct
        } else {
            Source::Bridged
        };
    }

    fn scratch_channel(&mut self, channel: usize, max_block: usize) -> *mut f32 {
        self.scratch[channel * max_block..].as_mut_ptr()
    }

    /// The host channel that feeds declared input channel `channel` of a `Bridged` bus: the
    /// same channel, or the only channel of a mono host bus (a mono source plays on every
    /// declared channel); null (silence) if the host has no such channel.
    ///
    /// SAFETY: `self.host` was set by `classify` in this call.
    unsafe fn bridged_input(&self, channel: usize) -> *mut f32 {
        // SAFETY: as for `host_channel`.
        let mono = unsafe { (*self.host).numChannels == 1 };
        unsafe { self.host_channel(if mono { 0 } else { channel }) }
    }

    /// The host's channel pointer `channel` (null if absent), for `Direct`/`Bridged`.
    ///
    /// SAFETY: `self.host` was set by `classify` in this call.
    unsafe fn host_channel(&self, channel: usize) -> *mut f32 {
        unsafe {
            let host = &*self.host;
            if channel < host.numChannels.max(0) as usize {
                *host.__field0.channelBuffers32.add(channel)
            } else {
                ptr::null_mut()
            }
        }
    }
}

/// Everything `process` needs, allocated outside the audio thread.
struct RtState {
    max_block: usize,
    inputs: Vec<BusSlot>,
    outputs: Vec<BusSlot>,
    /// The bus arrays handed to the wrapper as `ProcessData::inputs` / `outputs`.
    input_buses: Box<[AudioBusBuffers]>,
    output_buses: Box<[AudioBusBuffers]>,
    /// Adjusted copy of the host's `ProcessContext` for the second and later pieces of an
    /// oversized block.
    context: ProcessContext,
}

impl RtState {
    fn new(inputs: &[usize], outputs: &[usize], max_block: usize) -> Self {
        // SAFETY (zeroed): `AudioBusBuffers` and `ProcessContext` are plain C structs for which
        // all-zero is a valid value (null pointers, zero counts).
        let empty_bus = || unsafe { std::mem::zeroed::<AudioBusBuffers>() };
        RtState {
            max_block,
            inputs: inputs.iter().map(|&c| BusSlot::new(c, max_block)).collect(),
            outputs: outputs
                .iter()
                .map(|&c| BusSlot::new(c, max_block))
                .collect(),
            input_buses: inputs.iter().map(|_| empty_bus()).collect(),
            output_buses: outputs.iter().map(|_| empty_bus()).collect(),
            context: unsafe { std::mem::zeroed() },
        }
    }

    /// SAFETY: `host` is the host's valid `ProcessData` for this call.
    unsafe fn classify(&mut self, host: &ProcessData) -> Plan {
        for (i, slot) in self.inputs.iter_mut().enumerate() {
            unsafe { slot.classify(i, host.inputs, host.numInputs) };
        }
        for (i, slot) in self.outputs.iter_mut().enumerate() {
            unsafe { slot.classify(i, host.outputs, host.numOutputs) };
        }

        let slots = || self.inputs.iter().chain(self.outputs.iter());
        if slots().all(|s| s.source == Source::Direct) {
            // Nothing to fix (surplus host buses beyond the declared ones are never read by the
            // wrapper because its loops are bounded by its own bus counts).
            Plan::Unchanged
        } else if slots().all(|s| s.source == Source::Scratch) {
            // No audio at all: a flush in disguise (some hosts send those with numSamples > 0).
            Plan::Unchanged
        } else {
            Plan::Complete
        }
    }

    /// Hands the wrapper a completed `ProcessData`, in pieces of at most `max_block` samples.
    ///
    /// SAFETY: `data` is the host's valid `ProcessData`, `classify` was called for it, and
    /// `numSamples > 0`.
    unsafe fn complete_and_process(
        &mut self,
        data: *mut ProcessData,
        processor: &ComPtr<IAudioProcessor>,
    ) -> tresult {
        let host: ProcessData = unsafe { *data };
        let total = host.numSamples as usize;
        let single_piece = total <= self.max_block;
        let max_block = self.max_block;
        let mut result = kResultOk;

        let mut offset = 0;
        while offset < total {
            let len = (total - offset).min(max_block);

            // Inputs: host pointers (advanced to this piece) or zeroed scratch, bridged where the
            // host's channel count differs.
            for (slot, bus) in self.inputs.iter_mut().zip(self.input_buses.iter_mut()) {
                bus.numChannels = slot.channels as int32;
                bus.silenceFlags = 0;
                for c in 0..slot.channels {
                    slot.channel_ptrs[c] = if slot.source == Source::Direct {
                        // SAFETY: `Direct` means the host gave `channels` non-null channels of
                        // `total` samples each; `offset + len <= total`.
                        unsafe { slot.host_channel(c).add(offset) }
                    } else {
                        let scratch = slot.scratch_channel(c, max_block);
                        // SAFETY: scratch channels hold `max_block >= len` samples; a non-null
                        // host channel holds `total >= offset + len` samples; they never overlap.
                        unsafe {
                            let src = if slot.source == Source::Bridged {
                                slot.bridged_input(c)
                            } else {
                                ptr::null_mut()
                            };
                            if src.is_null() {
                                ptr::write_bytes(scratch, 0, len);
                            } else {
                                ptr::copy_nonoverlapping(src.add(offset), scratch, len);
                            }
                        }
                        scratch
                    };
                }
                match slot.source {
                    // SAFETY: `slot.host` is the host's valid bus (set by `classify`).
                    Source::Direct if single_piece => {
                        bus.silenceFlags = unsafe { (*slot.host).silenceFlags }
                    }
                    Source::Scratch => {
                        bus.silenceFlags = if slot.channels >= 64 {
                            u64::MAX
                        } else {
                            (1u64 << slot.channels) - 1
                        }
                    }
                    _ => {}
                }
                bus.__field0.channelBuffers32 = slot.channel_ptrs.as_mut_ptr();
            }

            // Outputs: host pointers (advanced to this piece) or zeroed scratch.
            for (slot, bus) in self.outputs.iter_mut().zip(self.output_buses.iter_mut()) {
                bus.numChannels = slot.channels as int32;
                bus.silenceFlags = 0;
                if slot.source == Source::Direct && single_piece {
                    // SAFETY: as above.
                    bus.silenceFlags = unsafe { (*slot.host).silenceFlags };
                }
                for c in 0..slot.channels {
                    slot.channel_ptrs[c] = if slot.source == Source::Direct {
                        // SAFETY: as for the inputs.
                        unsafe { slot.host_channel(c).add(offset) }
                    } else {
                        let scratch = slot.scratch_channel(c, max_block);
                        // SAFETY: scratch channels hold `max_block >= len` samples.
                        unsafe { ptr::write_bytes(scratch, 0, len) };
                        scratch
                    };
                }
                bus.__field0.channelBuffers32 = slot.channel_ptrs.as_mut_ptr();
            }

            let mut piece = host;
            piece.numSamples = len as int32;
            piece.numInputs = self.inputs.len() as int32;
            piece.numOutputs = self.outputs.len() as int32;
            piece.inputs = if self.inputs.is_empty() {
                ptr::null_mut()
            } else {
                self.input_buses.as_mut_ptr()
            };
            piece.outputs = if self.outputs.is_empty() {
                ptr::null_mut()
            } else {
                self.output_buses.as_mut_ptr()
            };
            if offset > 0 {
                // Events and parameter changes went to the first piece.
                piece.inputParameterChanges = ptr::null_mut();
                piece.inputEvents = ptr::null_mut();
                if !host.processContext.is_null() {
                    // SAFETY: the host's context is valid for this call; we copy it.
                    self.context = unsafe { *host.processContext };
                    advance_context(&mut self.context, offset);
                    piece.processContext = &mut self.context;
                }
            }

            // SAFETY: `piece` is a valid `ProcessData`: every declared bus has its declared channel
            // count and valid channel pointers for `len` samples; everything else is the host's.
            let piece_result = unsafe { processor.process(&mut piece) };
            if piece_result != kResultOk && result == kResultOk {
                result = piece_result;
            }

            // Write back what the host can see.
            for (slot, bus) in self.outputs.iter_mut().zip(self.output_buses.iter()) {
                match slot.source {
                    // SAFETY: `slot.host` is the host's valid bus.
                    Source::Direct if single_piece => unsafe {
                        (*slot.host).silenceFlags = bus.silenceFlags
                    },
                    Source::Bridged => {
                        // SAFETY: `host` was classified as a bus with `numChannels > 0` and a
                        // non-null channel array; null channel pointers are skipped; each host
                        // channel holds `total >= offset + len` samples.
                        let host_channels = unsafe { (*slot.host).numChannels.max(0) as usize };
                        if host_channels == 1 && slot.channels > 1 {
                            // A mono host bus gets the mix of the declared channels.
                            let dst = unsafe { slot.host_channel(0) };
                            if !dst.is_null() {
                                let scale = 1.0 / slot.channels as f32;
                                for i in 0..len {
                                    let sum: f32 = (0..slot.channels).map(|c| slot.scratch[c * max_block + i]).sum();
                                    // SAFETY: the host channel holds `total >= offset + len`
                                    // samples and never overlaps our scratch buffers.
                                    unsafe { *dst.add(offset + i) = sum * scale };
                                }
                            }
                            continue;
                        }
                        for c in 0..host_channels {
                            let dst = unsafe { slot.host_channel(c) };
                            if dst.is_null() {
                                continue;
                            }
                            unsafe {
                                if c < slot.channels {
                                    let src = slot.scratch_channel(c, max_block);
                                    ptr::copy_nonoverlapping(src, dst.add(offset), len);
                                } else {
                                    ptr::write_bytes(dst.add(offset), 0, len);
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }

            offset += len;
        }

        result
    }
}

/// Moves a copied `ProcessContext` `offset` samples forward (for the later pieces of an oversized
/// block).
fn advance_context(context: &mut ProcessContext, offset: usize) {
    context.projectTimeSamples += offset as i64;
    context.continousTimeSamples += offset as i64;
    let musical_time_valid = kProjectTimeMusicValid as u32 | kTempoValid as u32;
    if context.state & musical_time_valid == musical_time_valid && context.sampleRate > 0.0 {
        context.projectTimeMusic += offset as f64 / context.sampleRate * context.tempo / 60.0;
    }
}

// ------------------------------------------------------------------------------------------------
// Tests: a fake inner object (the part of nice-plug's wrapper the process path uses: IComponent
// for the declared buses, IAudioProcessor) driven through a host's call sequence.
// ------------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use nice_plug::wrapper::vst3::vst3::Steinberg::Vst::IEventList;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicU64;
    use std::time::{Duration, Instant};

    /// What the inner object saw in one `process` call.
    #[derive(Debug, Clone, Default)]
    struct Seen {
        samples: usize,
        /// Channel count of every input / output bus given, and whether all its channel pointers
        /// were non-null.
        inputs: Vec<(usize, bool)>,
        outputs: Vec<(usize, bool)>,
        /// The main input's samples, per channel.
        main_input: Vec<Vec<f32>>,
        project_time: Option<i64>,
        events: bool,
    }

    /// The inner object: declares `inputs`/`outputs` (channels per bus) and, in `process`, writes
    /// `(bus + 1) * main input[c] + 100 * c` to channel `c` of every output bus.
    struct FakeInner {
        inputs: Vec<usize>,
        outputs: Vec<usize>,
        seen: Mutex<Vec<Seen>>,
        /// The next `process` call sleeps this long (ms) after noting that it has begun.
        stall_ms: AtomicU64,
        stalling: AtomicBool,
    }

    impl Class for FakeInner {
        type Interfaces = (IComponent, IAudioProcessor);
    }

    impl IPluginBaseTrait for FakeInner {
        unsafe fn initialize(&self, _context: *mut FUnknown) -> tresult {
            kResultOk
        }
        unsafe fn terminate(&self) -> tresult {
            kResultOk
        }
    }

    impl IComponentTrait for FakeInner {
        unsafe fn getControllerClassId(&self, _class_id: *mut TUID) -> tresult {
            kResultFalse
        }
        unsafe fn setIoMode(&self, _mode: IoMode) -> tresult {
            kResultOk
        }
        unsafe fn getBusCount(&self, media_type: MediaType, dir: BusDirection) -> int32 {
            match (media_type, dir) {
                (K_AUDIO, K_INPUT) => self.inputs.len() as int32,
                (K_AUDIO, K_OUTPUT) => self.outputs.len() as int32,
                _ => 0,
            }
        }
        unsafe fn getBusInfo(&self, media_type: MediaType, dir: BusDirection, index: int32, bus: *mut BusInfo) -> tresult {
            let list = if dir == K_INPUT { &self.inputs } else { &self.outputs };
            match list.get(index as usize) {
                Some(&channels) if media_type == K_AUDIO => {
                    unsafe {
                        *bus = std::mem::zeroed();
                        (*bus).mediaType = K_AUDIO;
                        (*bus).direction = dir;
                        (*bus).channelCount = channels as int32;
                    }
                    kResultOk
                }
                _ => kInvalidArgument,
            }
        }
        unsafe fn getRoutingInfo(&self, _in_info: *mut RoutingInfo, _out_info: *mut RoutingInfo) -> tresult {
            kResultFalse
        }
        unsafe fn activateBus(&self, _media_type: MediaType, _dir: BusDirection, _index: int32, _state: TBool) -> tresult {
            kResultOk
        }
        unsafe fn setActive(&self, _state: TBool) -> tresult {
            kResultOk
        }
        unsafe fn setState(&self, _state: *mut IBStream) -> tresult {
            kResultOk
        }
        unsafe fn getState(&self, _state: *mut IBStream) -> tresult {
            kResultOk
        }
    }

    /// The channels of a bus as slices (`None` where the array or a pointer is null).
    unsafe fn channels(bus: &AudioBusBuffers, n: usize) -> Vec<Option<*mut f32>> {
        let ptrs = unsafe { bus.__field0.channelBuffers32 };
        (0..bus.numChannels.max(0) as usize)
            .map(|c| {
                if ptrs.is_null() {
                    return None;
                }
                let p = unsafe { *ptrs.add(c) };
                (!p.is_null() && n > 0).then_some(p)
            })
            .collect()
    }

    impl IAudioProcessorTrait for FakeInner {
        unsafe fn setBusArrangements(&self, _i: *mut SpeakerArrangement, _ni: int32, _o: *mut SpeakerArrangement, _no: int32) -> tresult {
            kResultFalse
        }
        unsafe fn getBusArrangement(&self, _dir: BusDirection, _index: int32, _arr: *mut SpeakerArrangement) -> tresult {
            kResultFalse
        }
        unsafe fn canProcessSampleSize(&self, size: int32) -> tresult {
            if size == K_SAMPLE_32 { kResultOk } else { kResultFalse }
        }
        unsafe fn getLatencySamples(&self) -> uint32 {
            0
        }
        unsafe fn setupProcessing(&self, _setup: *mut ProcessSetup) -> tresult {
            kResultOk
        }
        unsafe fn setProcessing(&self, _state: TBool) -> tresult {
            kResultOk
        }
        unsafe fn process(&self, data: *mut ProcessData) -> tresult {
            let data = unsafe { &*data };
            let n = data.numSamples.max(0) as usize;
            let buses = |ptr: *mut AudioBusBuffers, count: int32| -> Vec<AudioBusBuffers> {
                if ptr.is_null() { vec![] } else { (0..count.max(0) as usize).map(|i| unsafe { *ptr.add(i) }).collect() }
            };
            let (ins, outs) = (buses(data.inputs, data.numInputs), buses(data.outputs, data.numOutputs));
            let describe = |b: &AudioBusBuffers| {
                let ch = unsafe { channels(b, n) };
                (ch.len(), ch.iter().all(Option::is_some))
            };
            let main: Vec<Option<*mut f32>> = ins.first().map(|b| unsafe { channels(b, n) }).unwrap_or_default();
            let seen = Seen {
                samples: n,
                inputs: ins.iter().map(describe).collect(),
                outputs: outs.iter().map(describe).collect(),
                main_input: main.iter().map(|p| p.map_or(vec![], |p| unsafe { std::slice::from_raw_parts(p, n) }.to_vec())).collect(),
                project_time: (!data.processContext.is_null()).then(|| unsafe { (*data.processContext).projectTimeSamples }),
                events: !data.inputEvents.is_null(),
            };
            let stall = self.stall_ms.swap(0, Ordering::SeqCst);
            if stall > 0 {
                self.stalling.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(stall));
                self.stalling.store(false, Ordering::SeqCst);
            }
            for (o, bus) in outs.iter().enumerate() {
                for (c, p) in unsafe { channels(bus, n) }.into_iter().enumerate() {
                    let Some(p) = p else { continue };
                    for i in 0..n {
                        let x = seen.main_input.get(c).and_then(|ch| ch.get(i)).copied().unwrap_or(0.0);
                        unsafe { *p.add(i) = (o + 1) as f32 * x + 100.0 * c as f32 };
                    }
                }
            }
            self.seen.lock().unwrap().push(seen);
            kResultOk
        }
        unsafe fn getTailSamples(&self) -> uint32 {
            0
        }
    }

    /// A guard around a fake inner object with these declared buses, set up for `max_block`
    /// frames and active (what a host does before processing).
    fn guarded(inputs: &[usize], outputs: &[usize], max_block: i32) -> (ProcessGuard, ComWrapper<FakeInner>) {
        let fake = ComWrapper::new(FakeInner {
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            seen: Mutex::new(vec![]),
            stall_ms: AtomicU64::new(0),
            stalling: AtomicBool::new(false),
        });
        let guard = ProcessGuard::new(fake.to_com_ptr().unwrap(), fake.to_com_ptr().unwrap());
        setup(&guard, max_block);
        unsafe { assert_eq!(guard.set_active(1), kResultOk) };
        (guard, fake)
    }

    fn setup(guard: &ProcessGuard, max_block: i32) {
        let mut setup = ProcessSetup { processMode: 0, symbolicSampleSize: K_SAMPLE_32, maxSamplesPerBlock: max_block, sampleRate: 44100.0 };
        unsafe { assert_eq!(guard.setup_processing(&mut setup), kResultOk) };
    }

    fn seen(fake: &ComWrapper<FakeInner>) -> Vec<Seen> {
        std::mem::take(&mut *fake.seen.lock().unwrap())
    }

    /// The host's side of one call: its buses (channels per bus; a bus of 0 channels has a null
    /// channel array, as pedalboard passes unused ones) and their samples.
    struct HostCall {
        inputs: Vec<Vec<Vec<f32>>>,
        outputs: Vec<Vec<Vec<f32>>>,
    }

    impl HostCall {
        /// Input buses with these channel counts, every channel holding `x`; output buses with
        /// these channel counts, filled with NaN (so anything not written shows).
        fn new(inputs: &[usize], outputs: &[usize], x: &[f32]) -> Self {
            HostCall {
                inputs: inputs.iter().map(|&c| vec![x.to_vec(); c]).collect(),
                outputs: outputs.iter().map(|&c| vec![vec![f32::NAN; x.len()]; c]).collect(),
            }
        }

        /// One `process` call through the guard.
        fn run(&mut self, guard: &ProcessGuard, context: Option<&mut ProcessContext>, events: bool) -> tresult {
            let n = self.inputs.first().or(self.outputs.first()).and_then(|b| b.first()).map_or(0, Vec::len);
            let mut in_ptrs: Vec<Vec<*mut f32>> = self.inputs.iter_mut().map(|b| b.iter_mut().map(|c| c.as_mut_ptr()).collect()).collect();
            let mut out_ptrs: Vec<Vec<*mut f32>> = self.outputs.iter_mut().map(|b| b.iter_mut().map(|c| c.as_mut_ptr()).collect()).collect();
            let bus = |ptrs: &mut Vec<*mut f32>| {
                let mut b: AudioBusBuffers = unsafe { std::mem::zeroed() };
                b.numChannels = ptrs.len() as int32;
                b.__field0.channelBuffers32 = if ptrs.is_empty() { ptr::null_mut() } else { ptrs.as_mut_ptr() };
                b
            };
            let mut in_buses: Vec<AudioBusBuffers> = in_ptrs.iter_mut().map(bus).collect();
            let mut out_buses: Vec<AudioBusBuffers> = out_ptrs.iter_mut().map(bus).collect();
            let mut data: ProcessData = unsafe { std::mem::zeroed() };
            data.symbolicSampleSize = K_SAMPLE_32;
            data.numSamples = n as int32;
            data.numInputs = in_buses.len() as int32;
            data.numOutputs = out_buses.len() as int32;
            data.inputs = if in_buses.is_empty() { ptr::null_mut() } else { in_buses.as_mut_ptr() };
            data.outputs = if out_buses.is_empty() { ptr::null_mut() } else { out_buses.as_mut_ptr() };
            data.processContext = context.map_or(ptr::null_mut(), |c| c as *mut ProcessContext);
            // Never dereferenced: the fake only notes whether it is there.
            data.inputEvents = if events { ptr::NonNull::<IEventList>::dangling().as_ptr() } else { ptr::null_mut() };
            unsafe { guard.process(&mut data) }
        }
    }

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.37).sin()).collect()
    }

    /// What the fake writes to channel `c` of output bus `o` for input `x`.
    fn expected(o: usize, c: usize, x: &[f32]) -> Vec<f32> {
        x.iter().map(|v| (o + 1) as f32 * v + 100.0 * c as f32).collect()
    }

    #[test]
    fn a_mono_host_bus_feeds_both_input_channels_and_gets_the_mix_of_both_outputs() {
        let (guard, fake) = guarded(&[2], &[2, 2], 64);
        let x = ramp(40);
        // Mono in, mono main out, no aux bus.
        let mut call = HostCall::new(&[1], &[1], &x);
        assert_eq!(call.run(&guard, None, false), kResultOk);
        let s = seen(&fake);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].inputs, [(2, true)]);
        assert_eq!(s[0].outputs, [(2, true), (2, true)]);
        assert_eq!(s[0].main_input, [x.clone(), x.clone()], "the mono input must play on both channels");
        // The mono output: (L + R) / 2 of the main output.
        let (l, r) = (expected(0, 0, &x), expected(0, 1, &x));
        let mix: Vec<f32> = l.iter().zip(&r).map(|(a, b)| (a + b) / 2.0).collect();
        assert_eq!(call.outputs[0][0], mix);

        // Stereo in, mono out: the mix of the two processed channels.
        let mut call = HostCall::new(&[2], &[1, 0], &x);
        call.run(&guard, None, false);
        assert_eq!(seen(&fake)[0].main_input, [x.clone(), x.clone()]);
        assert_eq!(call.outputs[0][0], mix);

        // Mono in, stereo out.
        let mut call = HostCall::new(&[1], &[2], &x);
        call.run(&guard, None, false);
        assert_eq!(call.outputs[0], [l, r]);
    }

    #[test]
    fn a_block_longer_than_the_max_block_is_processed_in_pieces() {
        let (guard, fake) = guarded(&[2], &[2, 2], 64);
        let x = ramp(150);
        let mut context: ProcessContext = unsafe { std::mem::zeroed() };
        context.projectTimeSamples = 1000;
        context.sampleRate = 44100.0;
        // Main buses only: the call needs completing.
        let mut call = HostCall::new(&[2], &[2], &x);
        assert_eq!(call.run(&guard, Some(&mut context), true), kResultOk);
        let s = seen(&fake);
        assert_eq!(s.iter().map(|s| s.samples).collect::<Vec<_>>(), [64, 64, 22]);
        assert_eq!(s.iter().map(|s| s.project_time).collect::<Vec<_>>(), [Some(1000), Some(1064), Some(1128)]);
        assert_eq!(s.iter().map(|s| s.events).collect::<Vec<_>>(), [true, false, false], "events go to the first piece");
        assert!(s.iter().all(|s| s.outputs == [(2, true), (2, true)]));
        assert_eq!(s.iter().flat_map(|s| s.main_input[1].clone()).collect::<Vec<_>>(), x);
        assert_eq!(call.outputs[0], [expected(0, 0, &x), expected(0, 1, &x)]);
        assert_eq!(context.projectTimeSamples, 1000, "the host's context is left alone");
    }

    #[test]
    fn fewer_buses_than_declared_or_empty_ones_still_give_the_plugin_every_bus() {
        let (guard, fake) = guarded(&[2], &[2, 2, 2], 64);
        let x = ramp(50);
        let every_bus = [(2, true), (2, true), (2, true)];
        // The main output only (numOutputs = 1).
        let mut call = HostCall::new(&[2], &[2], &x);
        call.run(&guard, None, false);
        assert_eq!(seen(&fake)[0].outputs, every_bus);
        assert_eq!(call.outputs[0], [expected(0, 0, &x), expected(0, 1, &x)]);
        // pedalboard: the aux buses with 0 channels and no channel array.
        let mut call = HostCall::new(&[2], &[2, 0, 0], &x);
        call.run(&guard, None, false);
        assert_eq!(seen(&fake)[0].outputs, every_bus);
        assert_eq!(call.outputs[0], [expected(0, 0, &x), expected(0, 1, &x)]);
        // No input bus at all: silence in, every bus still there.
        let mut call = HostCall::new(&[], &[2], &x);
        call.run(&guard, None, false);
        let s = seen(&fake);
        assert_eq!((s[0].inputs.clone(), s[0].outputs.clone()), (vec![(2, true)], every_bus.to_vec()));
        assert_eq!(s[0].main_input, [vec![0.0; 50], vec![0.0; 50]]);
        // Every bus given: the host's data goes through as it is (its own buffers, one call).
        let mut call = HostCall::new(&[2], &[2, 2, 2], &ramp(100));
        call.run(&guard, None, false);
        assert_eq!(seen(&fake).len(), 1, "a complete call is never split");
        assert_eq!(call.outputs[2][1], expected(2, 1, &ramp(100)));
    }

    /// A host that calls `setupProcessing` (a new max block) while a long `process` call runs
    /// on another thread (this breaks VST3's rules, but a render may hold `process` for seconds):
    /// the setup returns at once, and the next call is guarded, with the new buffers.
    #[test]
    fn setup_during_a_long_process_call_never_waits_and_the_next_call_is_guarded() {
        let (guard, fake) = guarded(&[2], &[2, 2], 64);
        struct Shared<'a>(&'a ProcessGuard);
        // SAFETY: the guard is made for a host's threads (its state is behind the flags).
        unsafe impl Sync for Shared<'_> {}
        let shared = Shared(&guard);
        fake.stall_ms.store(1500, Ordering::SeqCst);
        std::thread::scope(|scope| {
            let shared = &shared;
            let audio = scope.spawn(move || {
                let mut call = HostCall::new(&[2], &[2], &ramp(32));
                call.run(shared.0, None, false)
            });
            let t = Instant::now();
            while !fake.stalling.load(Ordering::SeqCst) {
                assert!(t.elapsed() < Duration::from_secs(10), "process never began");
                std::thread::sleep(Duration::from_millis(1));
            }
            let t = Instant::now();
            setup(&guard, 48);
            unsafe { guard.set_active(1) };
            let took = t.elapsed();
            assert!(fake.stalling.load(Ordering::SeqCst), "the long call should still run");
            assert!(took < Duration::from_millis(100), "setup waited {took:?} for process");
            assert_eq!(audio.join().unwrap(), kResultOk);
        });
        assert_eq!(seen(&fake).len(), 1);
        // The next call: guarded (every bus), in pieces of the new max block.
        let x = ramp(60);
        let mut call = HostCall::new(&[2], &[2], &x);
        call.run(&guard, None, false);
        let s = seen(&fake);
        assert_eq!(s.iter().map(|s| (s.samples, s.outputs.len())).collect::<Vec<_>>(), [(48, 2), (12, 2)]);
        assert_eq!(call.outputs[0], [expected(0, 0, &x), expected(0, 1, &x)]);
        assert_eq!(guard.rt.unguarded.load(Ordering::Relaxed), 0);
        // The buffers it replaced are freed on the setup side.
        unsafe { guard.set_active(0) };
        assert!(unsafe { (*guard.rt.next.get()).is_none() });
    }

    /// Before any `setupProcessing` the guard passes calls through; it never splits or fakes
    /// buses without buffers of its own.
    #[test]
    fn without_setup_calls_pass_through_unchanged() {
        let fake = ComWrapper::new(FakeInner {
            inputs: vec![2],
            outputs: vec![2, 2],
            seen: Mutex::new(vec![]),
            stall_ms: AtomicU64::new(0),
            stalling: AtomicBool::new(false),
        });
        let guard = ProcessGuard::new(fake.to_com_ptr().unwrap(), fake.to_com_ptr().unwrap());
        unsafe { guard.set_active(1) };
        let mut call = HostCall::new(&[2], &[2], &ramp(10));
        call.run(&guard, None, false);
        assert_eq!(seen(&fake)[0].outputs, [(2, true)]);
    }
}
