/* Stand-in for the macOS SDK's TargetConditionals.h, used only by `.ci/run`'s type-check of the
 * macOS targets on Linux: ring (rustls, model downloads) compiles its C in its build script even
 * under `cargo check`. Nothing built with it is ever linked or run. */
#ifndef MDX_STEMS_TARGET_CONDITIONALS_STUB
#define MDX_STEMS_TARGET_CONDITIONALS_STUB
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_MACCATALYST 0
#define TARGET_OS_TV 0
#define TARGET_OS_WATCH 0
#define TARGET_OS_VISION 0
#define TARGET_OS_SIMULATOR 0
#define TARGET_OS_EMBEDDED 0
#endif
