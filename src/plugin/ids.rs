//! Who the plugins are to hosts: names, CLAP ids, VST3 class ids and Audio Unit codes, in the
//! order of the CLAP factory. A file without dependencies: the plugin compiles it as a module and
//! `xtask` includes it (`#[path]`) to write the Audio Unit's `Info.plist`, so that the codes in
//! the bundle are the plugin's own and cannot drift.

/// One plugin of the library.
pub struct PluginIds {
    /// The name hosts show.
    pub name: &'static str,
    pub clap_id: &'static str,
    pub vst3_class_id: [u8; 16],
    /// How the Audio Unit wrapper (clap-wrapper's AUv2, feature `au`) presents it.
    pub au: AuComponent,
}

/// One `AudioComponents` entry of the `.component` bundle's `Info.plist`.
pub struct AuComponent {
    /// `aufx` (effect) or `aumu` (instrument: Logic gives instruments multi-output variants and
    /// a side-chain input).
    pub kind: [u8; 4],
    /// Unique per plugin under [`AU_MANUFACTURER`].
    pub subtype: [u8; 4],
    /// The entry point in the binary: clap-wrapper's `GetPluginFactoryAUV2_<n>` wraps the `n`th
    /// plugin of the CLAP factory.
    pub factory: &'static str,
}

/// The vendor as hosts show it.
pub const VENDOR: &str = "MDX Stems";

/// The Audio Unit manufacturer code (4 characters, at least one upper case: Apple reserves
/// all-lower-case codes).
pub const AU_MANUFACTURER: [u8; 4] = *b"MdxS";

/// The bundle identifier prefix (`<prefix>.clap`, `.vst3`, `.component`).
pub const BUNDLE_ID_PREFIX: &str = "io.github.mdx-stems";

/// Main output plus a stereo output per stem: in Logic an instrument whose input is the side
/// chain, so that its "Multi Output" variant gives every stem an aux channel strip.
pub const MULTI: PluginIds = PluginIds {
    name: "MDX Stems",
    clap_id: "io.github.mdx-stems",
    vst3_class_id: *b"MdxStemsSeparate",
    au: AuComponent { kind: *b"aumu", subtype: *b"MdxM", factory: "GetPluginFactoryAUV2_0" },
};

/// Main output only: in Logic an audio effect (one instance per stem, with its solo setting).
pub const STEREO: PluginIds = PluginIds {
    name: "MDX Stems (Stereo)",
    clap_id: "io.github.mdx-stems.stereo",
    vst3_class_id: *b"MdxStemsStereoFx",
    au: AuComponent { kind: *b"aufx", subtype: *b"MdxF", factory: "GetPluginFactoryAUV2_1" },
};

/// Every plugin, in the order of the CLAP factory (`nice_export_clap!`).
pub const PLUGINS: [&PluginIds; 2] = [&MULTI, &STEREO];

/// A four-character code as text (`*b"aufx"` -> "aufx").
pub fn fourcc(code: [u8; 4]) -> String {
    code.iter().map(|&b| b as char).collect()
}
