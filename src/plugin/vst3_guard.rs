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
//!   arrangement in between), never on the audio thread.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
/// buffers for that.
pub struct BusGuard {
    // Owning interface pointers into the inner nice-plug `Wrapper<P>` (one reference each).
    component: ComPtr<IComponent>,
    controller: ComPtr<IEditController>,
    processor: ComPtr<IAudioProcessor>,
    midi_mapping: ComPtr<IMidiMapping>,
    note_expressions: ComPtr<INoteExpressionController>,
    context_requirements: ComPtr<IProcessContextRequirements>,
    unit_info: ComPtr<IUnitInfo>,
    info_listener: ComPtr<IInfoListener>,

    /// Buffers for completing `ProcessData`, shared between the setup calls and `process`.
    rt: RtCell,
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
            component: inner.cast()?,
            controller: inner.cast()?,
            processor: inner.cast()?,
            midi_mapping: inner.cast()?,
            note_expressions: inner.cast()?,
            context_requirements: inner.cast()?,
            unit_info: inner.cast()?,
            info_listener: inner.cast()?,
            rt: RtCell::new(),
        })
        // `inner` is released here; the guard keeps its own references.
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

    /// (Re)builds the process buffers for the current bus layout. `max_block` is the new
    /// `maxSamplesPerBlock` from `setupProcessing`, or `None` to keep the last one. Never called on
    /// the audio thread.
    fn prepare(&self, max_block: Option<usize>) {
        let inputs = self.declared_buses(K_INPUT);
        let outputs = self.declared_buses(K_OUTPUT);

        // Stop `process` from using the buffers until they are consistent again. If exclusive
        // access cannot be obtained below, `process` keeps passing calls through unchanged.
        self.rt.ready.store(false, Ordering::Release);
        let Some(access) = self.rt.lock_for_setup() else {
            return;
        };
        // SAFETY: `access` proves exclusive access to the state (see `RtCell`).
        let state = unsafe { &mut *self.rt.state.get() };
        let max_block = max_block.unwrap_or(state.max_block);
        if max_block == 0 {
            return; // no `setupProcessing` yet: stay in pass-through mode
        }
        let mut old = None;
        if state.max_block != max_block || !state.has_layout(&inputs, &outputs) {
            // Allocating while holding the flag only makes a concurrent (non-compliant) process
            // call pass through; it never waits for us.
            old = Some(std::mem::replace(
                state,
                RtState::new(&inputs, &outputs, max_block),
            ));
        }
        self.rt.ready.store(true, Ordering::Release);
        drop(access);
        drop(old);
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
        unsafe { self.component.initialize(context) }
    }

    unsafe fn terminate(&self) -> tresult {
        unsafe { self.component.terminate() }
    }
}

// --- IComponent ---------------------------------------------------------------------------------

impl IComponentTrait for BusGuard {
    unsafe fn getControllerClassId(&self, class_id: *mut TUID) -> tresult {
        unsafe { self.component.getControllerClassId(class_id) }
    }

    unsafe fn setIoMode(&self, mode: IoMode) -> tresult {
        unsafe { self.component.setIoMode(mode) }
    }

    unsafe fn getBusCount(&self, media_type: MediaType, dir: BusDirection) -> int32 {
        unsafe { self.component.getBusCount(media_type, dir) }
    }

    unsafe fn getBusInfo(
        &self,
        media_type: MediaType,
        dir: BusDirection,
        index: int32,
        bus: *mut BusInfo,
    ) -> tresult {
        unsafe { self.component.getBusInfo(media_type, dir, index, bus) }
    }

    unsafe fn getRoutingInfo(
        &self,
        in_info: *mut RoutingInfo,
        out_info: *mut RoutingInfo,
    ) -> tresult {
        unsafe { self.component.getRoutingInfo(in_info, out_info) }
    }

    unsafe fn activateBus(
        &self,
        media_type: MediaType,
        dir: BusDirection,
        index: int32,
        state: TBool,
    ) -> tresult {
        unsafe { self.component.activateBus(media_type, dir, index, state) }
    }

    unsafe fn setActive(&self, state: TBool) -> tresult {
        if state != 0 {
            // The host may have changed the bus arrangement since `setupProcessing`.
            self.prepare(None);
        }
        unsafe { self.component.setActive(state) }
    }

    unsafe fn setState(&self, state: *mut IBStream) -> tresult {
        unsafe { IComponentTrait::setState(&self.component, state) }
    }

    unsafe fn getState(&self, state: *mut IBStream) -> tresult {
        unsafe { IComponentTrait::getState(&self.component, state) }
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
            self.processor
                .setBusArrangements(inputs, num_ins, outputs, num_outs)
        }
    }

    unsafe fn getBusArrangement(
        &self,
        dir: BusDirection,
        index: int32,
        arr: *mut SpeakerArrangement,
    ) -> tresult {
        unsafe { self.processor.getBusArrangement(dir, index, arr) }
    }

    unsafe fn canProcessSampleSize(&self, symbolic_sample_size: int32) -> tresult {
        unsafe { self.processor.canProcessSampleSize(symbolic_sample_size) }
    }

    unsafe fn getLatencySamples(&self) -> uint32 {
        unsafe { self.processor.getLatencySamples() }
    }

    unsafe fn setupProcessing(&self, setup: *mut ProcessSetup) -> tresult {
        let result = unsafe { self.processor.setupProcessing(setup) };
        if result == kResultOk && !setup.is_null() {
            // SAFETY: non-null; the host passes a valid `ProcessSetup`.
            let max_block = unsafe { (*setup).maxSamplesPerBlock }.max(0) as usize;
            self.prepare(Some(max_block.min(MAX_SCRATCH_BLOCK)));
        }
        result
    }

    unsafe fn setProcessing(&self, state: TBool) -> tresult {
        unsafe { self.processor.setProcessing(state) }
    }

    unsafe fn process(&self, data: *mut ProcessData) -> tresult {
        // Everything that needs no fixing goes to the wrapper exactly as the host sent it.
        if data.is_null() || !self.rt.ready.load(Ordering::Acquire) {
            return unsafe { self.processor.process(data) };
        }
        // SAFETY: non-null; the host's `ProcessData` is valid for the duration of this call. We
        // only read it (and write silence flags of its output buses, see `complete_and_process`).
        let host = unsafe { &*data };
        if host.numSamples <= 0 || host.symbolicSampleSize != K_SAMPLE_32 {
            return unsafe { self.processor.process(data) };
        }

        // Non-blocking: if the state is being rebuilt (a host calling setup functions while
        // processing), behave as if there were no guard for this one call.
        let Some(_access) = self.rt.try_lock_for_process() else {
            return unsafe { self.processor.process(data) };
        };
        if !self.rt.ready.load(Ordering::Acquire) {
            return unsafe { self.processor.process(data) };
        }
        // SAFETY: `_access` proves exclusive access to the state (see `RtCell`).
        let state = unsafe { &mut *self.rt.state.get() };

        // SAFETY: `host` is the host's valid `ProcessData` (see above).
        match unsafe { state.classify(host) } {
            Plan::Unchanged => unsafe { self.processor.process(data) },
            Plan::Complete => unsafe { state.complete_and_process(data, &self.processor) },
        }
    }

    unsafe fn getTailSamples(&self) -> uint32 {
        unsafe { self.processor.getTailSamples() }
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
/// The state lives in an `UnsafeCell` and is only ever accessed through a `&mut` obtained while
/// holding `busy` (an atomic flag used as a try-lock; acquire on entry, release on exit, so the
/// setup thread's writes happen-before the audio thread's reads and vice versa):
///
/// - `process` takes it with a single `compare_exchange` and, if that fails, hands the host's data
///   through unchanged instead of waiting: the audio thread never blocks, spins or allocates here.
/// - `setupProcessing` / `setActive(true)` (main thread, never concurrent with `process` in a
///   compliant host: VST3 requires the processor to be inactive for both) take it by retrying with
///   short sleeps for up to one second. If they cannot (a host processing on another thread while
///   reconfiguring), they leave `ready` false and `process` keeps passing calls through unchanged,
///   i.e. the plugin then behaves exactly as without the guard.
///
/// VST3 also guarantees `process` is never called concurrently with itself; the flag makes even a
/// violation of that harmless (the second call passes through).
struct RtCell {
    busy: AtomicBool,
    /// Whether `state` matches the inner wrapper's current layout and `maxSamplesPerBlock`.
    ready: AtomicBool,
    state: UnsafeCell<RtState>,
}

/// Proof of exclusive access to `RtCell::state`; releases the flag when dropped.
struct RtAccess<'a>(&'a AtomicBool);

impl Drop for RtAccess<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl RtCell {
    fn new() -> Self {
        RtCell {
            busy: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            state: UnsafeCell::new(RtState::new(&[], &[], 0)),
        }
    }

    /// Audio thread: one attempt, never waits.
    fn try_lock_for_process(&self) -> Option<RtAccess<'_>> {
        self.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| RtAccess(&self.busy))
    }

    /// Setup thread only: waits (sleeping) for up to one second.
    fn lock_for_setup(&self) -> Option<RtAccess<'_>> {
        let start = Instant::now();
        loop {
            if let Some(access) = self.try_lock_for_process() {
                return Some(access);
            }
            if start.elapsed() > Duration::from_secs(1) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
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

    fn has_layout(&self, inputs: &[usize], outputs: &[usize]) -> bool {
        self.inputs
            .iter()
            .map(|s| s.channels)
            .eq(inputs.iter().copied())
            && self
                .outputs
                .iter()
                .map(|s| s.channels)
                .eq(outputs.iter().copied())
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
                                slot.host_channel(c)
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
