/* ProcessPrng for Wine 8 (Debian 12's), which lacks bcryptprimitives.dll: Rust's std (1.78 and
 * later) imports ProcessPrng from it on Windows. Windows 10 and later have the real DLL; only
 * our Wine runs (tests/wine.rs, .ci/validators.sh) put this one beside the executable they run.
 * Built by shim.sh (mingw-w64):
 *   x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll bcryptprimitives.c -ladvapi32
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom, advapi32 */

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
