#!/usr/bin/env python3
"""Export audio through Ardour 7 (Debian bookworm `ardour` 7.3), headless, with a VST3 plugin on a
stereo track, and return the exported WAV plus what Ardour reported.

Standard library only (python3 >= 3.8). Needs the Debian package `ardour` (ardour7-lua,
/usr/lib/ardour7/ardour-vst3-scanner). Checking the result is the caller's job: tests/plugin_ardour.rs
compares the export with the command line's stems.

    python3 ardour_export.py --bundle "target/bundled/MDX Stems.vst3" --wav in.wav --rate 44100 \
        --plugin "MDX Stems (Stereo)" [--preset 0] --workdir /tmp/ardour-work \
        [--env MDX_STEMS_MODELS=/path] [--env NICE_LOG=/tmp/plugin.log] [--json result.json]

or from Python:

    from ardour_export import ardour_export
    res = ardour_export(bundle, wav, 44100, "MDX Stems (Stereo)", workdir, env={...}, preset=None)
    res["wav"], res["latency"], res["timings"] ...

Pipeline (each Ardour process is one "stage", run with a timeout; a stage that crashes is retried,
a stage that ends normally but reports a wrong result is not):
  1. private HOME (<workdir>/home): copy the bundle to ~/.vst3 when it changed (content hash),
     back-date it, drop Ardour's VST3 cache/scan log, run ardour-vst3-scanner, check the cache;
  2. ardour7-lua: new session on the Dummy backend, stereo track "T" (strict I/O), plugin as the
     first processor, optional preset (plugin parameter 0); save; report I/O and latency;
  3. write the WAV into the session XML as one region at 0 (fades off) and set the session range;
  4. ardour7-lua: load the session, Session:simple_export() of the session range to a float WAV
     (no normalisation, no dither) of the master bus.

Ardour 7.3 quirks handled here (measured; each is described where it is handled below):
  - new tracks made from Lua are auto-connected to the master bus by a background thread that a
    session saved at once may miss (silent export): T is connected explicitly and checked on load;
  - Lua-made tracks are not strict-I/O (the GUI's default is): without it a 2-in/14-out plugin
    widens the track to 14 channels, the VBAP panner takes over and the export is silent; with it
    only the plugin's main output (pins 0/1) reaches the track, the extra pins are left unmapped;
  - a parameter set from Lua reaches the plugin's state only after a process cycle: wait before
    saving, re-check after loading;
  - load_session keeps the backend's block size (1024 unless set before loading);
  - the VST3 scan cache is keyed by the module path and is stale while the module is not older
    than it; a re-copied bundle needs the cache and scan log dropped (the Lua session otherwise
    stops listing it);
  - session folder name == session name (Ardour reads interchange/<folder>/audiofiles);
  - Ardour 7.3 aborts now and then in close_session/teardown (double free, corrupted size, SIGSEGV),
    after the export file was complete: such a stage is re-run (--retries);
  - Session:cfg():set_realtime_export(true) has no effect here: SimpleExport always exports
    freewheeling (its timespan is forced to non-real-time).
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

ARDOUR_LIB = "/usr/lib/ardour7"
SCANNER = ARDOUR_LIB + "/ardour-vst3-scanner"
LUA = "ardour7-lua"
SESSION_NAME = "mdx"          # folder name must equal the session name (Ardour reads interchange/<folder>/)
PRESET_ID = "6d3c1a52-7b7e-4c3e-9a51-3f0c2b7e9d01"
FORMAT_ID = "6d3c1a52-7b7e-4c3e-9a51-3f0c2b7e9d02"
CRASH_RCS = {134, -6, 139, -11, 136, -8, 135, -7}   # SIGABRT (double free), SIGSEGV, SIGFPE, SIGBUS

# ---------------------------------------------------------------------------------------------
# Lua run inside ardour7-lua. Lines starting with "@@ " are machine-readable results: "@@ key value".

LUA_COMMON = r"""
local function R(k, v) print("@@ " .. k .. " " .. tostring(v)); io.stdout:flush() end
local function try(f) local ok, v = pcall(f); if ok then return v else return "n/a" end end
local function fail(msg) R("error", msg); io.stdout:flush(); os.exit(3) end
"""

LUA_CREATE = LUA_COMMON + r"""
local dir, name = os.getenv("ARD_DIR"), os.getenv("ARD_NAME")
local rate = tonumber(os.getenv("ARD_RATE"))
local block = tonumber(os.getenv("ARD_BUFFER") or "1024")
local plugname = os.getenv("ARD_PLUGIN")
local preset = tonumber(os.getenv("ARD_PRESET") or "-1")
local strict = os.getenv("ARD_STRICT_IO") ~= "0"
local be = AudioEngine:set_backend("None (Dummy)", "", "")
if not be or be:isnil() then fail("no Dummy backend") end
be:set_sample_rate(rate)
be:set_buffer_size(block)
local s = create_session(dir, name, rate)
if not s then fail("create_session failed") end
R("session_rate", Session:nominal_sample_rate())
R("block", Session:get_block_size())
local listed = {}
for p in ARDOUR.LuaAPI.list_plugins():iter() do
  if p.type == ARDOUR.PluginType.VST3 then R("vst3_listed", p.name); listed[p.name] = true end
end
if plugname ~= "" and not listed[plugname] then fail("plugin not listed by Ardour: " .. plugname .. " (scan cache stale or scan failed)") end
local tl = Session:new_audio_track(2, 2, nil, 1, "T", ARDOUR.PresentationInfo.max_order, ARDOUR.TrackMode.Normal, true)
local tr = tl:front()
if strict then tr:set_strict_io(true) end
R("strict_io", tr:strict_io())
-- Ardour auto-connects new tracks to the master bus from a background thread, which a session
-- saved right away may miss (the export is then silent): connect T explicitly.
local function connect_to_master()
  local o, mi = tr:output(), Session:master_out():input()
  for i = 0, 1 do
    local want = mi:audio(i):name()
    if not o:audio(i):connected_to(want) then
      o:disconnect(o:audio(i), want, nil)
      if o:connect(o:audio(i), want, nil) ~= 0 then fail("cannot connect " .. o:audio(i):name() .. " to " .. want) end
    end
  end
end
connect_to_master()
if plugname == "" then
  R("plugin", "none")
  Session:save_state("", false, false, false, false, false)
  close_session()
  R("ok", "created")
  return
end
local plug = ARDOUR.LuaAPI.new_plugin(Session, plugname, ARDOUR.PluginType.VST3, "")
if plug:isnil() then fail("new_plugin returned nil for " .. plugname) end
if tr:add_processor_by_index(plug, 0, nil, true) ~= 0 then fail("add_processor_by_index failed") end
local pi = plug:to_insert()
local pl = pi:plugin(0)
R("plugin", plug:display_name())
R("plugin_natural_in", pi:natural_input_streams():n_audio())
R("plugin_natural_out", pi:natural_output_streams():n_audio())
R("plugin_in", pi:input_streams():n_audio())
R("plugin_out", pi:output_streams():n_audio())
R("track_outputs", tr:n_outputs():n_audio())
connect_to_master()
local om = pi:output_map(0)
for i = 0, pi:natural_output_streams():n_audio() - 1 do
  local ok_idx = om:get(ARDOUR.DataType("audio"), i)
  R("output_map", string.format("plugin out %d -> track channel %s", i, tostring(ok_idx)))
end
local idx0 = pl:nth_parameter(0, true)
R("param0", string.format("%s = %s", pl:parameter_label(idx0), tostring((ARDOUR.LuaAPI.get_processor_param(plug, 0, true)))))
if preset >= 0 then
  local ok = ARDOUR.LuaAPI.set_processor_param(plug, 0, preset)
  if not ok then fail("set_processor_param(0, " .. preset .. ") failed") end
  -- the value reaches the plugin with its next process() call; the session state (the plugin's
  -- own chunk) only holds it after that, so let the engine run a few cycles before saving
  ARDOUR.LuaAPI.usleep(300000)
  R("preset_set", string.format("%s -> %s", tostring(preset), tostring((ARDOUR.LuaAPI.get_processor_param(plug, 0, true)))))
end
R("plugin_latency", try(function() return pi:signal_latency() end))
R("route_latency", try(function() return tr:signal_latency() end))
R("worst_latency_preroll", try(function() return Session:worst_latency_preroll() end))
Session:save_state("", false, false, false, false, false)
R("saved", "1")
io.stdout:flush()
close_session()
R("closed", "1")
R("ok", "created")
"""

LUA_EXPORT = LUA_COMMON + r"""
local dir, name = os.getenv("ARD_DIR"), os.getenv("ARD_NAME")
local wait_us = math.floor(tonumber(os.getenv("ARD_WAIT_S") or "1") * 1e6)
local rt = os.getenv("ARD_RT_EXPORT") == "1"
local be = AudioEngine:set_backend("None (Dummy)", "", "")
if not be or be:isnil() then fail("no Dummy backend") end
be:set_buffer_size(tonumber(os.getenv("ARD_BUFFER") or "1024"))  -- load_session keeps the backend's block size
local s = load_session(dir, name)
if not s then fail("load_session failed") end
R("session_rate", Session:nominal_sample_rate())
R("block", Session:get_block_size())
if Session:get_block_size() ~= tonumber(os.getenv("ARD_BUFFER") or "1024") then fail("block size " .. Session:get_block_size() .. " instead of " .. os.getenv("ARD_BUFFER")) end
Session:cfg():set_realtime_export(rt)
R("realtime_export_cfg", Session:cfg():get_realtime_export())
local tr = Session:route_by_name("T")
if tr:isnil() then fail("track T not found") end
for i = 0, 1 do
  local o, want = tr:output():audio(i), Session:master_out():input():audio(i):name()
  if not o:connected_to(want) then fail(o:name() .. " is not connected to " .. want .. " (export would be silent)") end
end
R("track_outputs", tr:n_outputs():n_audio())
local p = tr:nth_plugin(0)
local want = os.getenv("ARD_PLUGIN")
if want ~= "" then
  if p:isnil() then fail("track T has no plugin after load (plugin missing at load time?)") end
  R("plugin", p:display_name())
  R("param0", tostring((ARDOUR.LuaAPI.get_processor_param(p, 0, true))))
  local preset = tonumber(os.getenv("ARD_PRESET") or "-1")
  if preset >= 0 and math.abs(ARDOUR.LuaAPI.get_processor_param(p, 0, true) - preset) > 1e-6 then
    -- the saved state missed the value: set it again, let it reach the plugin
    ARDOUR.LuaAPI.set_processor_param(p, 0, preset)
    ARDOUR.LuaAPI.usleep(300000)
    R("preset_reapplied", tostring((ARDOUR.LuaAPI.get_processor_param(p, 0, true))))
    if math.abs(ARDOUR.LuaAPI.get_processor_param(p, 0, true) - preset) > 1e-6 then fail("cannot set the preset (param 0) to " .. preset) end
  end
  R("plugin_latency", p:to_insert():signal_latency())
end
R("route_latency", tr:signal_latency())
R("worst_latency_preroll", Session:worst_latency_preroll())
local pl_t = tr:to_track():playlist()
R("regions", pl_t:region_list():size())
ARDOUR.LuaAPI.usleep(wait_us)
-- latency may change once the plugin has (re)activated
if want ~= "" then R("plugin_latency_after_wait", p:to_insert():signal_latency()) end
R("worst_latency_preroll_after_wait", Session:worst_latency_preroll())
local e = Session:simple_export()
e:set_name(os.getenv("ARD_EXPORT_NAME"))
e:set_folder(dir .. "/export")
if not e:set_preset(os.getenv("ARD_PRESET_ID")) then fail("export preset not found (~/.config/ardour7/export)") end
local loc = Session:locations():session_range_location()
if not loc then fail("no session range") end
R("range", string.format("%d %d", loc:start():samples(), loc:_end():samples()))
e:set_range(loc:start():samples(), loc:_end():samples())
if not e:check_outputs() then fail("check_outputs: master bus has no outputs to export") end
io.stdout:flush()
local t0 = ARDOUR.LuaAPI.monotonic_time()
local ok = e:run_export()
R("run_export_s", string.format("%.3f", (ARDOUR.LuaAPI.monotonic_time() - t0) / 1e6))
io.stdout:flush()
if not ok then fail("run_export returned false") end
R("export_done", "1")  -- the WAV is closed before run_export returns
io.stdout:flush()
close_session()
R("closed", "1")
io.stdout:flush()
R("ok", "exported")
"""

FORMAT_XML = """<?xml version="1.0" encoding="UTF-8"?>
<ExportFormatSpecification name="ci float wav" id="%s" with-cue="false" with-toc="false" with-mp4chaps="false" command="" analyse="false" soundcloud-upload="false">
  <Encoding id="F_WAV" type="T_Sndfile" extension="wav" name="WAV" has-sample-format="true" channel-limit="256"/>
  <SampleRate rate="1"/>
  <SRCQuality quality="SRC_SincBest"/>
  <EncodingOptions>
    <Option name="sample-format" value="SF_Float"/>
    <Option name="dithering" value="D_None"/>
    <Option name="tag-metadata" value="false"/>
    <Option name="tag-support" value="false"/>
    <Option name="broadcast-info" value="false"/>
  </EncodingOptions>
  <Processing>
    <Normalize enabled="false" loudness="no" dbfs="0" lufs="-23" dbtp="-1"/>
    <Silence>
      <Start><Trim enabled="false"/><Add enabled="false"><Duration format="Timecode" hours="0" minutes="0" seconds="0" frames="0"/></Add></Start>
      <End><Trim enabled="false"/><Add enabled="false"><Duration format="Timecode" hours="0" minutes="0" seconds="0" frames="0"/></Add></End>
    </Silence>
  </Processing>
</ExportFormatSpecification>
""" % FORMAT_ID

PRESET_XML = """<?xml version="1.0" encoding="UTF-8"?>
<ExportPreset id="%s" name="ci float wav">
  <ExportFormat id="%s"/>
  <ExportFilename>
    <Folder relative="1" path="export"/>
    <Field name="label" enabled="0"/>
    <Field name="session" enabled="0"/>
    <Field name="snapshot" enabled="0"/>
    <Field name="timespan" enabled="1"/>
    <Field name="revision" enabled="0"/>
    <Field name="time" enabled="0" value="T_None"/>
    <Field name="date" enabled="0" value="D_None"/>
  </ExportFilename>
</ExportPreset>
""" % (PRESET_ID, FORMAT_ID)


class ArdourExportError(RuntimeError):
    """Raised with a diagnosis; .result holds what was gathered so far."""

    def __init__(self, msg, result=None):
        super().__init__(msg)
        self.result = result or {}


def log(msg):
    print("[ardour_export] " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
def wav_info(path):
    """(channels, rate, frames, format tag) of a RIFF/WAVE file, standard library only."""
    with open(path, "rb") as f:
        hdr = f.read(12)
        if len(hdr) < 12 or hdr[:4] not in (b"RIFF", b"RF64") or hdr[8:12] != b"WAVE":
            raise ArdourExportError("%s is not a RIFF/WAVE file" % path)
        fmt = None
        data_len = None
        ds64_data = None
        while True:
            ch = f.read(8)
            if len(ch) < 8:
                break
            cid, clen = ch[:4], struct.unpack("<I", ch[4:])[0]
            if cid == b"fmt ":
                body = f.read(clen)
                tag, nch, rate, _, block_align, bits = struct.unpack("<HHIIHH", body[:16])
                if tag == 0xFFFE and len(body) >= 26:
                    tag = struct.unpack("<H", body[24:26])[0]
                fmt = (tag, nch, rate, block_align, bits)
            elif cid == b"ds64":
                body = f.read(clen)
                ds64_data = struct.unpack("<Q", body[8:16])[0]
            elif cid == b"data":
                data_len = ds64_data if (clen == 0xFFFFFFFF and ds64_data) else clen
                break
            else:
                f.seek(clen, 1)
            if clen & 1:
                f.seek(1, 1)
    if fmt is None or data_len is None:
        raise ArdourExportError("%s: no fmt/data chunk" % path)
    tag, nch, rate, block_align, bits = fmt
    return {"channels": nch, "rate": rate, "frames": data_len // block_align, "format_tag": tag, "bits": bits}


def wav_is_silent(path):
    """True when every sample of a PCM/float WAV is (+/-) zero (fast, standard library)."""
    with open(path, "rb") as f:
        f.seek(12)
        while True:
            ch = f.read(8)
            if len(ch) < 8:
                return True
            cid, clen = ch[:4], struct.unpack("<I", ch[4:])[0]
            if cid == b"data":
                while True:
                    blk = f.read(1 << 22)
                    if not blk:
                        return True
                    if blk.translate(None, b"\x00\x80"):
                        return False
            f.seek(clen + (clen & 1), 1)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for blk in iter(lambda: f.read(1 << 20), b""):
            h.update(blk)
    return h.hexdigest()


def bundle_hash(bundle):
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(bundle)):
        dirs.sort()
        for fn in sorted(files):
            p = os.path.join(root, fn)
            h.update(os.path.relpath(p, bundle).encode() + b"\0" + sha256_file(p).encode())
    return h.hexdigest()


def module_path(bundle):
    """The .so Ardour loads from a bundle (Contents/x86_64-linux/<name>.so)."""
    d = os.path.join(bundle, "Contents", "x86_64-linux")
    name = os.path.splitext(os.path.basename(bundle.rstrip("/")))[0]
    p = os.path.join(d, name + ".so")
    if os.path.isfile(p):
        return p
    sos = [f for f in os.listdir(d) if f.endswith(".so")] if os.path.isdir(d) else []
    if len(sos) == 1:
        return os.path.join(d, sos[0])
    raise ArdourExportError("no module in %s (expected Contents/x86_64-linux/%s.so)" % (bundle, name))


def vst3_cache_file(home, module):
    # Ardour: ~/.cache/ardour7/vst/<sha1(module path)>.v3i; valid while module mtime < cache mtime
    return os.path.join(home, ".cache", "ardour7", "vst", hashlib.sha1(module.encode()).hexdigest() + ".v3i")


def run_proc(cmd, env, timeout, log_path, cwd=None):
    """Run cmd in its own process group; kill the group on timeout. Returns (rc, output, seconds, timed_out)."""
    t0 = time.monotonic()
    with open(log_path, "wb") as lf:
        p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=lf, stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    p.wait(timeout=5)
                    break
                except subprocess.TimeoutExpired:
                    continue
    dt = time.monotonic() - t0
    with open(log_path, "rb") as lf:
        out = lf.read().decode("utf-8", "replace")
    return p.returncode, out, dt, timed_out


def parse_results(out):
    res = {}
    for line in out.splitlines():
        if line.startswith("@@ "):
            parts = line[3:].split(" ", 1)
            k, v = parts[0], (parts[1] if len(parts) > 1 else "")
            if k in res:
                if not isinstance(res[k], list):
                    res[k] = [res[k]]
                res[k].append(v)
            else:
                res[k] = v
    return res


def tail(text, n=25):
    lines = [l for l in text.splitlines() if l.strip()]
    return "\n".join("    | " + l for l in lines[-n:])


# ---------------------------------------------------------------------------------------------
def prepare_home(bundle, home, env, timeout, timings, notes):
    """Install the bundle into <home>/.vst3 and make sure Ardour's scan cache lists it."""
    bundle = os.path.abspath(bundle)
    if not os.path.isdir(bundle):
        raise ArdourExportError("bundle %s does not exist" % bundle)
    module_path(bundle)  # validates
    vst3_dir = os.path.join(home, ".vst3")
    dest = os.path.join(vst3_dir, os.path.basename(bundle.rstrip("/")))
    stamp = os.path.join(home, ".bundle-hash")
    h = bundle_hash(bundle)
    mod = module_path(dest) if os.path.isdir(dest) else None
    cache = vst3_cache_file(home, mod) if mod else None
    fresh = (os.path.isfile(stamp) and open(stamp).read().strip() == h and cache and os.path.isfile(cache)
             and os.path.getmtime(mod) < os.path.getmtime(cache))
    if fresh:
        notes.append("bundle unchanged since last scan: reusing the scan cache")
        return dest
    t0 = time.monotonic()
    # A rebuilt/re-copied bundle makes Ardour's Lua session stop listing it until the cache and the
    # scan log are dropped and the scanner runs again.
    for p in (os.path.join(home, ".cache", "ardour7"),
              os.path.join(home, ".config", "ardour7", "plugin_metadata", "scan_log"),
              os.path.join(home, ".config", "ardour7", "plugin_metadata", "plugin_stats")):
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)
    if os.path.exists(stamp):
        os.remove(stamp)
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.makedirs(vst3_dir, exist_ok=True)
    shutil.copytree(bundle, dest)
    # The cache is stale while the module is as new as the cache file (1 s mtime resolution):
    # back-date the copy.
    old = time.time() - 3600
    for root, dirs, files in os.walk(dest):
        for n in dirs + files:
            os.utime(os.path.join(root, n), (old, old), follow_symlinks=False)
    os.utime(dest, (old, old))
    mod = module_path(dest)
    senv = dict(env)
    senv["LD_LIBRARY_PATH"] = ARDOUR_LIB + (":" + senv["LD_LIBRARY_PATH"] if senv.get("LD_LIBRARY_PATH") else "")
    rc, out, dt, to = run_proc([SCANNER, "-f", "-v", dest], senv, timeout, os.path.join(home, "..", "scan.log"))
    timings["scan_s"] = round(time.monotonic() - t0, 3)
    cache = vst3_cache_file(home, mod)
    if to:
        raise ArdourExportError("ardour-vst3-scanner hung for %d s on %s (killed)\n%s" % (timeout, dest, tail(out)))
    if rc != 0 or not os.path.isfile(cache):
        raise ArdourExportError("ardour-vst3-scanner failed (rc %s) on %s; no cache %s\n%s" % (rc, dest, cache, tail(out)))
    with open(stamp, "w") as f:
        f.write(h)
    found = re.findall(r"Found Plugin: (.*)", out)
    notes.append("scanned: %s" % ", ".join(found))
    return dest


def write_export_preset(home):
    d = os.path.join(home, ".config", "ardour7", "export")
    os.makedirs(d, exist_ok=True)
    for fn, text in (("ci-float.format", FORMAT_XML), ("ci-float.preset", PRESET_XML)):
        p = os.path.join(d, fn)
        if not os.path.isfile(p) or open(p).read() != text:
            with open(p, "w") as f:
                f.write(text)


def inject_region(sess_dir, name, wav, frames, tail_frames):
    """One stereo region of `wav` at 0 on track T, session range 0..frames+tail, fades off."""
    ad = os.path.join(sess_dir, "interchange", name, "audiofiles")
    os.makedirs(ad, exist_ok=True)
    shutil.copy(wav, os.path.join(ad, "src.wav"))
    p = os.path.join(sess_dir, name + ".ardour")
    x = open(p).read()
    S0, S1, R0, R1 = 990001, 990002, 990011, 990012
    src = ('<Sources>\n'
           '    <Source name="src.wav" type="audio" flags="" id="%d" captured-for="" take-id="" channel="0" origin="" gain="1"/>\n'
           '    <Source name="src.wav" type="audio" flags="" id="%d" captured-for="" take-id="" channel="1" origin="" gain="1"/>\n'
           '  </Sources>' % (S0, S1))

    def region(rid, whole):
        return ('<Region name="src" muted="0" opaque="1" locked="0" video-locked="0" automatic="0" whole-file="%d" import="0" '
                'external="0" sync-marked="0" left-of-split="0" right-of-split="0" hidden="0" position-locked="0" '
                'valid-transients="0" start="0" length="%d" position="0" sync-position="0" ancestral-start="0" '
                'ancestral-length="0" stretch="1" shift="1" layering-index="0" envelope-active="0" default-fade-in="0" '
                'default-fade-out="0" fade-in-active="0" fade-out-active="0" scale-amplitude="1" id="%d" type="audio" '
                'first-edit="nothing" source-0="%d" source-1="%d" master-source-0="%d" master-source-1="%d" channels="2"/>'
                % (whole, frames, rid, S0, S1, S0, S1))

    checks = []
    for old, new in (("<Sources/>", src),
                     ("<Regions/>", "<Regions>\n    " + region(R0, 1) + "\n  </Regions>"),
                     ("<Locations/>", '<Locations>\n    <Location id="990021" name="session" start="0" end="%d" '
                                      'flags="IsSessionRange" locked="0" timestamp="0" cue="0"/>\n  </Locations>'
                                      % (frames + tail_frames))):
        checks.append(old in x)
        x = x.replace(old, new, 1)
    m = re.search(r'(<Playlist id="\d+" name="T" type="audio"[^>]*?)/>', x)
    checks.append(bool(m))
    if not all(checks):
        raise ArdourExportError("session XML %s does not have the expected empty Sources/Regions/Locations/playlist "
                                "T (%s): Ardour version changed?" % (p, checks))
    x = x[:m.start()] + m.group(1) + ">\n      " + region(R1, 0) + "\n    </Playlist>" + x[m.end():]
    x = x.replace('session-range-is-free="1"', 'session-range-is-free="0"')
    x = x.replace('<Option name="use-region-fades" value="1"/>', '<Option name="use-region-fades" value="0"/>')
    with open(p, "w") as f:
        f.write(x)


def classify(rc, out, timed_out, timeout):
    """'ok', 'crash' (retry), 'hang' (retry) or 'fail' (do not retry)."""
    if timed_out:
        return "hang", "Ardour hung: no exit after %g s (process group killed)" % timeout
    if rc in CRASH_RCS or (rc is not None and rc < 0):
        what = "double free" if "double free" in out else ("signal %d" % -rc if rc < 0 else "rc %d" % rc)
        return "crash", "Ardour crashed (%s, rc %s)" % (what, rc)
    if rc != 0:
        return "fail", "Ardour exited with rc %s" % rc
    return "ok", ""


def run_stage(stage, lua_text, env, workdir, timeout, retries, attempts_log, prepare=None, retry_hangs=False):
    """Run one ardour7-lua stage; retry crashes (and hangs if retry_hangs), never wrong results."""
    script = os.path.join(workdir, stage + ".lua")
    with open(script, "w") as f:
        f.write(lua_text)
    last = None
    for attempt in range(1, retries + 2):
        if prepare:
            prepare()
        logp = os.path.join(workdir, "%s.%d.log" % (stage, attempt))
        rc, out, dt, to = run_proc([LUA, script], env, timeout, logp, cwd=workdir)
        res = parse_results(out)
        kind, why = classify(rc, out, to, timeout)
        if kind == "ok" and res.get("ok") is None:
            kind, why = "fail", "Ardour exited 0 without finishing the script"
        if "closed" in res:
            phase = "after close_session (process exit)"
        elif "export_done" in res or "saved" in res:
            phase = "in close_session/teardown, after the %s was complete" % ("export" if stage == "export" else "session was saved")
        elif "range" in res:
            phase = "during run_export"
        elif "session_rate" in res:
            phase = "after the session was %s, before %s" % ("loaded" if stage == "export" else "created",
                                                           "the export" if stage == "export" else "saving")
        else:
            phase = "while starting Ardour / %s the session" % ("loading" if stage == "export" else "creating")
        entry = {"stage": stage, "attempt": attempt, "rc": rc, "seconds": round(dt, 3), "outcome": kind, "log": logp}
        if kind != "ok":
            entry["phase"] = phase
            entry["why"] = why
            m = re.search(r"(double free[^\n]*|free\(\)[^\n]*|corrupted[^\n]*|malloc[^\n]*|Segmentation[^\n]*)", out)
            if m:
                entry["message"] = m.group(1)
        attempts_log.append(entry)
        if kind == "ok":
            return res, out, dt
        last = (kind, why, out, res, logp)
        if kind == "fail" or (kind == "hang" and not retry_hangs) or attempt == retries + 1:
            break
        log("%s: attempt %d: %s (%s); retrying" % (stage, attempt, why, entry["phase"]))
    kind, why, out, res, logp = last
    msg = "%s stage failed: %s, %s" % (stage, why, attempts_log[-1].get("phase", ""))
    if "error" in res:
        msg += "\n  script said: %s" % res["error"]
    n = sum(1 for a in attempts_log if a["stage"] == stage)
    if n > 1:
        msg += " (%d attempts: %s)" % (n, ", ".join(a["outcome"] for a in attempts_log if a["stage"] == stage))
    msg += "\n  log: %s\n%s" % (logp, tail(out))
    raise ArdourExportError(msg)


def ardour_export(bundle, wav, rate, plugin, workdir, env=None, preset=None, timeout=120, retries=3,
                  buffer=1024, tail_s=0.0, wait_s=0.0, strict_io=True, realtime_export=False, export_name="bounce",
                  retry_hangs=False):
    """Export `wav` through `plugin` (a class of the VST3 `bundle`) in Ardour 7. See module doc.

    Returns a dict: wav (exported file), frames, latency (plugin latency Ardour reports), stages
    (Ardour's own reports), timings, attempts (one entry per Ardour run), notes."""
    t_all = time.monotonic()
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    home = os.path.join(workdir, "home")
    os.makedirs(home, exist_ok=True)
    wav = os.path.abspath(wav)
    info = wav_info(wav)
    if info["channels"] != 2:
        raise ArdourExportError("%s has %d channels; a stereo WAV is needed" % (wav, info["channels"]))
    if info["rate"] != rate:
        raise ArdourExportError("%s is at %d Hz, the session at %d Hz: resample first (Ardour would play it at the "
                                "wrong speed)" % (wav, info["rate"], rate))
    if shutil.which(LUA) is None or not os.path.isfile(SCANNER):
        raise ArdourExportError("Ardour 7 is not installed (apt-get install -y ardour)")

    timings, notes, attempts = {}, [], []
    result = {"input": wav, "input_frames": info["frames"], "rate": rate, "plugin": plugin, "timings": timings,
              "notes": notes, "attempts": attempts}
    try:
        base_env = dict(os.environ)
        base_env.update({k: str(v) for k, v in (env or {}).items()})
        base_env["HOME"] = home
        base_env.pop("XDG_CONFIG_HOME", None)
        base_env.pop("XDG_CACHE_HOME", None)
        base_env.pop("XDG_DATA_HOME", None)
        t0 = time.monotonic()
        if plugin:
            prepare_home(bundle, home, base_env, timeout, timings, notes)
        timings["home_s"] = round(time.monotonic() - t0, 3)
        write_export_preset(home)

        sess_dir = os.path.join(workdir, SESSION_NAME)
        lua_env = dict(base_env)
        lua_env.update({"ARD_DIR": sess_dir, "ARD_NAME": SESSION_NAME, "ARD_RATE": str(rate), "ARD_BUFFER": str(buffer),
                        "ARD_PLUGIN": plugin, "ARD_PRESET": str(-1 if preset is None else preset),
                        "ARD_STRICT_IO": "1" if strict_io else "0", "ARD_WAIT_S": str(wait_s),
                        "ARD_RT_EXPORT": "1" if realtime_export else "0", "ARD_EXPORT_NAME": export_name,
                        "ARD_PRESET_ID": PRESET_ID})

        def fresh_session():
            if os.path.exists(sess_dir):
                shutil.rmtree(sess_dir)

        t0 = time.monotonic()
        created, _, _ = run_stage("create", LUA_CREATE, lua_env, workdir, timeout, retries, attempts, fresh_session,
                                    retry_hangs)
        timings["create_s"] = round(time.monotonic() - t0, 3)
        result["create"] = created

        tail_frames = int(round(tail_s * rate))
        inject_region(sess_dir, SESSION_NAME, wav, info["frames"], tail_frames)
        out_wav = os.path.join(sess_dir, "export", export_name + ".wav")

        def clean_export():
            if os.path.exists(out_wav):
                os.remove(out_wav)

        t0 = time.monotonic()
        exported, out, _ = run_stage("export", LUA_EXPORT, lua_env, workdir, timeout, retries, attempts, clean_export,
                                     retry_hangs)
        timings["export_stage_s"] = round(time.monotonic() - t0, 3)
        result["export"] = exported
        try:
            timings["run_export_s"] = float(exported.get("run_export_s"))
        except (TypeError, ValueError):
            pass
        if not os.path.isfile(out_wav):
            raise ArdourExportError("Ardour reported success but wrote no %s" % out_wav)
        oi = wav_info(out_wav)
        result.update({"wav": out_wav, "frames": oi["frames"], "out_channels": oi["channels"],
                       "out_rate": oi["rate"], "out_format_tag": oi["format_tag"]})
        if oi["rate"] != rate or oi["channels"] != 2 or oi["format_tag"] != 3:
            raise ArdourExportError("unexpected export format %s (want 2 ch float at %d Hz)" % (oi, rate), result)
        if oi["frames"] != info["frames"] + tail_frames:
            raise ArdourExportError("export has %d frames, the session range %d" % (oi["frames"], info["frames"] + tail_frames), result)
        result["warnings"] = []
        if wav_is_silent(out_wav) and not wav_is_silent(wav):
            w = ("the export is silent although the input is not: track T not reaching the master bus, a missing "
                 "source, or the plugin's main output silent (with strict I/O off the track widens to the plugin's "
                 "output count and Ardour's VBAP panner silences it)")
            result["warnings"].append(w)
            log("WARNING: " + w)
        try:
            result["latency"] = int(exported.get("plugin_latency_after_wait", exported.get("plugin_latency")))
        except (TypeError, ValueError):
            result["latency"] = None
        timings["total_s"] = round(time.monotonic() - t_all, 3)
        timings["audio_s"] = round(info["frames"] / rate, 3)
        return result
    except ArdourExportError as e:
        e.result = result
        raise


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="", help=".vst3 bundle (folder)")
    ap.add_argument("--wav", required=True, help="stereo WAV at --rate")
    ap.add_argument("--rate", type=int, required=True, choices=[44100, 48000, 88200, 96000])
    ap.add_argument("--plugin", required=True, help='plugin class name, e.g. "MDX Stems (Stereo)"; "" = no plugin (dry round trip)')
    ap.add_argument("--preset", type=int, default=None, help="value of plugin parameter 0 (preset index)")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--env", action="append", default=[], metavar="K=V", help="environment for Ardour/the plugin")
    ap.add_argument("--timeout", type=float, default=120, help="seconds before an Ardour process counts as hung")
    ap.add_argument("--retries", type=int, default=3, help="re-runs of a stage that crashed")
    ap.add_argument("--retry-hangs", action="store_true", help="also re-run a stage that timed out")
    ap.add_argument("--buffer", type=int, default=1024, help="Dummy backend buffer size")
    ap.add_argument("--tail", type=float, default=0.0, help="seconds added to the session range after the region")
    ap.add_argument("--wait", type=float, default=0.0, help="seconds to wait after loading before exporting")
    ap.add_argument("--no-strict-io", action="store_true", help="let the plugin's extra outputs widen the track")
    ap.add_argument("--realtime-export", action="store_true", help="Session:cfg():set_realtime_export(true)")
    ap.add_argument("--json", help="write the result here")
    a = ap.parse_args()
    env = {}
    for kv in a.env:
        k, _, v = kv.partition("=")
        env[k] = v
    try:
        res = ardour_export(a.bundle, a.wav, a.rate, a.plugin, a.workdir, env=env, preset=a.preset, timeout=a.timeout,
                            retries=a.retries, buffer=a.buffer, tail_s=a.tail, wait_s=a.wait,
                            strict_io=not a.no_strict_io, realtime_export=a.realtime_export,
                            retry_hangs=a.retry_hangs)
    except ArdourExportError as e:
        print("ARDOUR EXPORT FAILED: %s" % e, file=sys.stderr)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"error": str(e), **e.result}, f, indent=1)
        sys.exit(2)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
