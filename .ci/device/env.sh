# Source on the device machine: finds the real CUDA libraries (never a stubs folder) and sets
# LD_LIBRARY_PATH so our binaries (linked against link-time stubs) bind to them.
libdirs=""
for lib in libcuda.so.1 libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13 libcufft.so.12 libcudnn.so.9; do
  p=$(find /usr /opt /lib /lib64 -name "$lib" -not -path '*/stubs/*' 2>/dev/null | grep -v -E 'site-packages|dist-packages|\.venv' | head -1)
  [ -z "$p" ] && p=$(find / -xdev -name "$lib" -not -path '*/stubs/*' -not -path '/proc/*' 2>/dev/null | head -1)
  echo "lib $lib -> ${p:-NOT FOUND}" >&2
  [ -n "$p" ] && d=$(dirname "$p") && case ":$libdirs:" in *":$d:"*) ;; *) libdirs="$libdirs:$d";; esac
done
export LD_LIBRARY_PATH="${libdirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >&2
